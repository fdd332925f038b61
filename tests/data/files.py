"""Writing fixture files in the sources' formats: GeoTIFFs, JPEG class folders, zip archives."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image


def write_geotiff(path: Path, data: np.ndarray, crs: str = "EPSG:32632", pixel: float = 10.0) -> None:
    """A (bands, size, size) array as a GeoTIFF with a north-up geotransform."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bands, height, width = data.shape
    import rasterio  # here, not at import: the GPU machine has no rasterio and collects every test module
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=bands, dtype=data.dtype.name,
                       crs=crs, transform=Affine(pixel, 0, 500000, 0, -pixel, 5000000)) as dst:
        dst.write(data)


def jpeg_class_tree(folder: Path, classes: Iterable[str], per_class: int, size: int, seed: int,
                    name: Callable[[str, int], str]) -> Path:
    """folder/<class>/<name(class, n)> for n = 1..per_class: random size x size RGB JPEGs."""
    rng = np.random.default_rng(seed)
    for cls in classes:
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for n in range(1, per_class + 1):
            pixels = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / cls / name(cls, n), quality=90)
    return folder


def zip_tree(staging: Path, archive: Path, pattern: str) -> Path:
    """Zip a staged fixture tree into a source archive, paths relative to the staging root."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(staging.rglob(pattern)):
            zf.write(path, path.relative_to(staging).as_posix())
    return archive
