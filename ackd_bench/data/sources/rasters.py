"""Reading source rasters with rasterio, with the checks every source needs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import DatasetError

# Reflectances are stored as uint16; integer rasters that fit are widened losslessly.
LOSSLESS_TO_UINT16 = (np.uint8, np.uint16)


def read_bands(path: Path, *, count: int, size: int, indexes: Sequence[int], out_size: int | None = None,
               kind: str = "GeoTIFF") -> np.ndarray:
    """Bands `indexes` (1-based) of a raster that must have `count` bands of size x size, as uint16.

    With `out_size`, bands are resampled bilinearly to out_size x out_size (BigEarthNet's 20 m bands
    onto the 10 m grid)."""
    # imported when a raster is read, not with the package: training, and the GPU machines it runs
    # on, need no rasterio (tests/test_acceptance.py runs the GPU path with it unimportable)
    import rasterio
    from rasterio.enums import Resampling

    try:
        # only the GeoTIFF driver, and no probing of the folder for sidecars: a "GeoTIFF" that is really
        # a VRT would otherwise read pixels from any file, or over the network (/vsicurl/)
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(path, driver="GTiff") as src:
            if src.count != count or (src.height, src.width) != (size, size):
                raise DatasetError(f"{path}: {_bands(src.count)} of {src.height}x{src.width}, expected "
                                   f"{_bands(count)} of {size}x{size}")
            dtype = np.dtype(src.dtypes[0])
            if dtype not in [np.dtype(d) for d in LOSSLESS_TO_UINT16]:
                raise DatasetError(f"{path}: dtype {dtype}, expected uint16 (or uint8) reflectance")
            shape = None if out_size in (None, size) else (len(indexes), out_size, out_size)
            image = src.read(list(indexes), out_shape=shape, resampling=Resampling.bilinear)
    except rasterio.errors.RasterioIOError as exc:
        raise DatasetError(f"{path}: unreadable {kind} ({exc})") from None
    return image.astype(np.uint16, copy=False)


def _bands(count: int) -> str:
    return f"{count} band" if count == 1 else f"{count} bands"
