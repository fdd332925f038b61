"""Writes a tiny NWPU-RESISC45.zip in the published layout: NWPU-RESISC45/<class>/<class>_NNN.jpg,
256x256 RGB JPEGs."""

from __future__ import annotations

from pathlib import Path

from ..files import jpeg_class_tree, zip_tree

S2S_EU_CLASSES = ("rectangular_farmland", "terrace", "forest", "chaparral", "freeway", "industrial_area", "meadow",
                  "dense_residential", "medium_residential", "river", "lake")


def make_tree(root: Path, per_class: int = 5, seed: int = 0, classes=S2S_EU_CLASSES, size: int = 256) -> Path:
    return jpeg_class_tree(root / "NWPU-RESISC45", classes, per_class, size, seed, lambda cls, n: f"{cls}_{n:03d}.jpg")


def make_archive(out_dir: Path, per_class: int = 5, seed: int = 0, classes=S2S_EU_CLASSES) -> Path:
    staging = out_dir / "resisc45-staging"
    make_tree(staging, per_class, seed, classes)
    return zip_tree(staging, out_dir / "NWPU-RESISC45.zip", "*.jpg")
