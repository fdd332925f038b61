"""Writes a tiny AID tree in the published layout: AID/<Class>/<class>_<n>.jpg, 600x600 RGB JPEGs
(AID is local-only: there is no archive to serve)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

M2S_GL_CLASSES = ("Forest", "Pond", "Industrial", "Meadow", "River", "Farmland", "BaseballField", "Playground",
                  "Stadium", "Viaduct", "Beach", "Airport", "Port")


def make_tree(root: Path, per_class: int = 2, seed: int = 0, classes=M2S_GL_CLASSES, size: int = 600) -> Path:
    rng = np.random.default_rng(seed)
    for name in classes:
        folder = root / "AID" / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, per_class + 1):
            pixels = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{name.lower()}_{n}.jpg", quality=90)
    return root / "AID"
