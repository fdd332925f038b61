"""NWPU-RESISC45 (Cheng et al. 2017): 45 classes x 700 Google Earth RGB JPEGs of 256x256 px."""

from __future__ import annotations

from .fetch import Archive
from .folders import JpegFolderSource


class RESISC45(JpegFolderSource):
    name = "resisc45"
    # torchgeo's pinned copy on the Hugging Face hub (torchgeo 0.8, datasets/resisc45.py)
    archive = Archive(
        name="resisc45",
        url="https://hf.co/datasets/isaaccorley/resisc45/resolve/883edc0eee77b2c84225472f10f126e3ed83fa6e/NWPU-RESISC45.zip",
        filename="NWPU-RESISC45.zip",
        md5="75206b2e16446591afa88e2628744886",
        tree="NWPU-RESISC45",
        size="0.4 GB",
        max_bytes=10**9,
    )
    classes = ("airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge", "chaparral",
               "church", "circular_farmland", "cloud", "commercial_area", "dense_residential", "desert", "forest",
               "freeway", "golf_course", "ground_track_field", "harbor", "industrial_area", "intersection", "island",
               "lake", "meadow", "medium_residential", "mobile_home_park", "mountain", "overpass", "palace",
               "parking_lot", "railway", "railway_station", "rectangular_farmland", "river", "roundabout", "runway",
               "sea_ice", "ship", "snowberg", "sparse_residential", "stadium", "storage_tank", "tennis_court",
               "terrace", "thermal_power_station", "wetland")
    licence = "research use (NWPU-RESISC45 terms)"
    citation = ("G. Cheng, J. Han, X. Lu. Remote Sensing Image Scene Classification: Benchmark and State of the Art. "
                "Proceedings of the IEEE 105(10), 2017.")
