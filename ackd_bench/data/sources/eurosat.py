"""EuroSAT, all 13 Sentinel-2 bands (Helber et al. 2018): 27,000 64x64 uint16 GeoTIFF patches."""

from __future__ import annotations

from .fetch import Archive
from .folders import GeoTiffFolderSource, PairedJpegSource


class EuroSATAllBands(GeoTiffFolderSource):
    name = "eurosat"
    # torchgeo's pinned copy on the Hugging Face hub (torchgeo 0.8, datasets/eurosat.py)
    archive = Archive(
        name="eurosat",
        url="https://hf.co/datasets/torchgeo/eurosat/resolve/1ce6f1bfb56db63fd91b6ecc466ea67f2509774c/EuroSATallBands.zip",
        filename="EuroSATallBands.zip",
        md5="5ac12b3b2557aa56e1826e981e8e200e",
        tree="ds/images/remote_sensing/otherDatasets/sentinel_2/tif",
        size="2.0 GB",
        max_bytes=3 * 10**9,
        other_trees=("EuroSAT_MS", "EuroSAT_MS/EuroSAT_MS"),  # the Zenodo release's layout
    )
    classes = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
               "Residential", "River", "SeaLake")
    file_bands = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
    patch_size = 64
    licence = "MIT"
    citation = ("P. Helber, B. Bischke, A. Dengel, D. Borth. EuroSAT: A Novel Dataset and Deep Learning Benchmark for "
                "Land Use and Land Cover Classification. IEEE JSTARS 12(7), 2019.")


class EuroSATRGB(PairedJpegSource):
    """EuroSAT's RGB release: the same 27,000 patches as JPEGs (B04, B03, B02), `2750/<Class>/<Class>_<n>.jpg`."""

    name = "eurosat_rgb"
    # the Hugging Face copy torchvision pins (torchvision 0.29, datasets/eurosat.py); the file is
    # unchanged at torchgeo's pin of the same repository
    archive = Archive(
        name="eurosat_rgb",
        url="https://hf.co/datasets/torchgeo/eurosat/resolve/c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",
        filename="EuroSAT.zip",
        md5="c8fa014336c82ac7804f0398fcb19387",
        tree="2750",
        size="94 MB",
        max_bytes=200 * 10**6,
    )
    classes = EuroSATAllBands.classes
    licence = EuroSATAllBands.licence
    citation = EuroSATAllBands.citation
