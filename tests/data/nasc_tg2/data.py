"""Writes a tiny NaSC-TG2 tree in the release's layout: MS/<class>/<class>_<n>.tif, 14-band uint16
128x128 GeoTIFFs, and RGB/<class>/<class>_<n>.jpg, the true-colour JPEGs of the same scenes (the
release is local-only: there is no archive to serve)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..files import write_geotiff

CLASSES = ("beach", "circularfarmland", "cloud", "desert", "forest", "mountain", "rectangularfarmland", "residential",
           "river", "snowberg")
RESISC45_NAMESAKES = ("beach", "circular_farmland", "cloud", "desert", "forest", "mountain", "rectangular_farmland",
                      "dense_residential", "medium_residential", "river", "snowberg")


def write_tif(path: Path, rng: np.random.Generator, bands: int = 14, size: int = 128, dtype: str = "uint16") -> None:
    write_geotiff(path, rng.integers(0, 1000, size=(bands, size, size)).astype(dtype), crs="EPSG:32649", pixel=100.0)


def make_tree(root: Path, per_class: int = 3, seed: int = 0, classes=CLASSES) -> Path:
    rng = np.random.default_rng(seed)
    for name in classes:
        for n in range(1, per_class + 1):
            write_tif(root / "MS" / name / f"{name}_{n}.tif", rng)
            (root / "RGB" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, size=(128, 128, 3), dtype=np.uint8)).save(
                root / "RGB" / name / f"{name}_{n}.jpg")
    return root / "MS"
