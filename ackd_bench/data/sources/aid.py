"""AID (Xia et al. 2017): 10,000 Google Earth RGB scenes of 600x600 px in 30 classes.

torchgeo has no AID class and the hub copies we found publish no pinned revision or checksum we
could verify, so AID is read from a local copy (`--source-dir`) in its published layout.
"""

from __future__ import annotations

from .fetch import Archive
from .folders import JpegFolderSource

CLASSES = ("Airport", "BareLand", "BaseballField", "Beach", "Bridge", "Center", "Church", "Commercial",
           "DenseResidential", "Desert", "Farmland", "Forest", "Industrial", "Meadow", "MediumResidential", "Mountain",
           "Park", "Parking", "Playground", "Pond", "Port", "RailwayStation", "Resort", "River", "School",
           "SparseResidential", "Square", "Stadium", "StorageTanks", "Viaduct")


class AID(JpegFolderSource):
    name = "aid"
    archive = Archive(
        name="aid",
        url=None, filename=None, md5=None,
        tree="AID",
        size="10,000 JPEGs",
        page="https://huggingface.co/datasets/isaaccorley/aid (a rehost of the authors' release)",
        layout="AID/<Class>/<class>_<n>.jpg (600x600 RGB JPEGs; classes " + ", ".join(CLASSES) + ")",
    )
    classes = CLASSES
    licence = "research use (AID terms; unspecified upstream)"
    citation = ("G.-S. Xia, J. Hu, F. Hu, B. Shi, X. Bai, Y. Zhong, L. Zhang, X. Lu. AID: A Benchmark Data Set for "
                "Performance Evaluation of Aerial Scene Classification. IEEE TGRS 55(7), 2017.")
