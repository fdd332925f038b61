"""Writes a tiny NWPU-RESISC45.zip in the published layout: NWPU-RESISC45/<class>/<class>_NNN.jpg,
256x256 RGB JPEGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..archive import zip_tree

S2S_EU_CLASSES = ("rectangular_farmland", "terrace", "forest", "chaparral", "freeway", "industrial_area", "meadow",
                  "dense_residential", "medium_residential", "river", "lake")


def make_tree(root: Path, per_class: int = 5, seed: int = 0, classes=S2S_EU_CLASSES, size: int = 256) -> Path:
    rng = np.random.default_rng(seed)
    for name in classes:
        folder = root / "NWPU-RESISC45" / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, per_class + 1):
            pixels = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{n:03d}.jpg", quality=90)
    return root / "NWPU-RESISC45"


def make_archive(out_dir: Path, per_class: int = 5, seed: int = 0, classes=S2S_EU_CLASSES) -> Path:
    staging = out_dir / "resisc45-staging"
    make_tree(staging, per_class, seed, classes)
    return zip_tree(staging, out_dir / "NWPU-RESISC45.zip", "*.jpg")
