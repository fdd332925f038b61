"""NaSC-TG2 multispectral (Zhou et al. 2021): 20,000 128x128 Tiangong-2 scenes, 14 bands, 10 classes.

The 14-band release is published by the China Manned Space Engineering data service, not on any
hub we can pin, so it is read from a local directory (`--source-dir`) only. Its band table is not
in the sources we could verify; bands are named B01..B14 in file order (0.40-1.04 um).
"""

from __future__ import annotations

from .fetch import Archive
from .folders import GeoTiffFolderSource, PairedJpegSource

CLASSES = ("beach", "circularfarmland", "cloud", "desert", "forest", "mountain", "rectangularfarmland", "residential",
           "river", "snowberg")


class NaSCTG2Multispectral(GeoTiffFolderSource):
    name = "nasc_tg2_ms"
    archive = Archive(
        name="nasc_tg2_ms",
        url=None, filename=None, md5=None,
        tree="MS",
        other_trees=("NaSC-TG2/MS", "NASC_TG2/MS"),
        size="about 20,000 14-band GeoTIFFs",
        page="http://www.msadc.cn/main/setsubDetail?id=1370312964720037889 (China Manned Space data service)",
        layout="MS/<class>/*.tif (14-band 128x128 GeoTIFFs; classes " + ", ".join(CLASSES) + ")",
    )
    classes = CLASSES
    file_bands = tuple(f"B{i:02d}" for i in range(1, 15))
    patch_size = 128
    licence = "research use (CMSA data service terms)"
    citation = ("Z. Zhou, S. Li, W. Wu, W. Guo, X. Li, G. Xia, Z. Zhao. NaSC-TG2: Natural Scene Classification With "
                "Tiangong-2 Remotely Sensed Imagery. IEEE JSTARS 14, 2021.")


class NaSCTG2RGB(PairedJpegSource):
    """The release's true-colour JPEGs of the same scenes, `RGB/<class>/<name>.jpg` next to `MS/`.

    The hub copy (jonathan-roberts1/NaSC-TG2, parquet) is not used: pairing needs each image's file
    name, which we could not verify it keeps."""

    name = "nasc_tg2_rgb"
    archive = Archive(
        name="nasc_tg2_rgb",
        url=None, filename=None, md5=None,
        tree="RGB",
        other_trees=("NaSC-TG2/RGB", "NASC_TG2/RGB"),
        size="about 20,000 JPEGs",
        page=NaSCTG2Multispectral.archive.page,
        layout="RGB/<class>/*.jpg next to MS/ (128x128 JPEGs, same file names as the MS GeoTIFFs)",
    )
    classes = CLASSES
    licence = NaSCTG2Multispectral.licence
    citation = NaSCTG2Multispectral.citation
