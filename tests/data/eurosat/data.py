"""Writes a tiny EuroSATallBands.zip in the published layout:
ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_<n>.tif, 13-band uint16
64x64 GeoTIFFs (band order B01..B12, B8A) in a UTM CRS, like the real archive; and the RGB
release EuroSAT.zip: 2750/<Class>/<Class>_<n>.jpg, 64x64 JPEGs of the same patches.

The file's band k (0-based) holds values from 1000 k to 1000 k + 999, so that a stored or fed plane
says which file band it is (`plane // 1000`): a band read under another name shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import jpeg_class_tree, write_geotiff, zip_tree

TREE = "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"
CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake")


FILE_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")


def write_tif(path: Path, rng: np.random.Generator, bands: int = 13, size: int = 64) -> None:
    offsets = (1000 * np.arange(bands, dtype=np.uint16))[:, None, None]
    write_geotiff(path, rng.integers(0, 1000, size=(bands, size, size), dtype=np.uint16) + offsets)


def make_tree(root: Path, per_class: int = 6, seed: int = 0, classes=CLASSES) -> Path:
    rng = np.random.default_rng(seed)
    for name in classes:
        for n in range(1, per_class + 1):
            write_tif(root / TREE / name / f"{name}_{n}.tif", rng)
    return root / TREE


def make_archive(out_dir: Path, per_class: int = 6, seed: int = 0) -> Path:
    staging = out_dir / "eurosat-staging"
    make_tree(staging, per_class, seed)
    return zip_tree(staging, out_dir / "EuroSATallBands.zip", "*.tif")


def make_rgb_tree(root: Path, per_class: int = 6, seed: int = 1, classes=CLASSES) -> Path:
    return jpeg_class_tree(root / "2750", classes, per_class, 64, seed, lambda cls, n: f"{cls}_{n}.jpg")


def make_rgb_archive(out_dir: Path, per_class: int = 6, seed: int = 1) -> Path:
    staging = out_dir / "eurosat-rgb-staging"
    make_rgb_tree(staging, per_class, seed)
    return zip_tree(staging, out_dir / "EuroSAT.zip", "*.jpg")
