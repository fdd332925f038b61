"""Writes a tiny AID tree in the published layout: AID/<Class>/<class>_<n>.jpg, 600x600 RGB JPEGs
(AID is local-only: there is no archive to serve)."""

from __future__ import annotations

from pathlib import Path

from ..files import jpeg_class_tree

M2S_GL_CLASSES = ("Forest", "Pond", "Industrial", "Meadow", "River", "Farmland", "BaseballField", "Playground",
                  "Stadium", "Viaduct", "Beach", "Airport", "Port")


def make_tree(root: Path, per_class: int = 2, seed: int = 0, classes=M2S_GL_CLASSES, size: int = 600) -> Path:
    return jpeg_class_tree(root / "AID", classes, per_class, size, seed, lambda cls, n: f"{cls.lower()}_{n}.jpg")
