"""Writes a tiny BigEarthNet v2 (reBEN) in the hub's published form: `metadata.parquet` (the eight
reBEN columns), `BigEarthNet-S2.tar.gz` cut into the parts `.tar.gzaa` and `.tar.gzab`, and
`Reference_Maps.tar.gzaa`, holding BigEarthNet-S2/<tile>/<patch>/<patch>_<band>.tif (uint16; 10 m bands
120x120, 20 m bands 60x60, 60 m bands 20x20) and Reference_Maps/<tile>/<patch>/<patch>_reference_map.tif
(uint16 CORINE codes, 120x120)."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import write_geotiff

TILE = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
BANDS = {"B01": 20, "B02": 120, "B03": 120, "B04": 120, "B05": 60, "B06": 60, "B07": 60, "B08": 120, "B8A": 60,
         "B09": 20, "B11": 60, "B12": 60}
CORINE_19 = {111: "Urban fabric", 112: "Urban fabric", 121: "Industrial or commercial units", 211: "Arable land",
             231: "Pastures", 311: "Broad-leaved forest", 312: "Coniferous forest", 331: "Beaches, dunes, sands",
             512: "Inland waters", 523: "Marine waters"}


@dataclass
class Patch:
    row: int
    codes: dict[int, int]  # CORINE code -> pixels (the rest of the 14,400 is code 999, unlabelled)
    split: str = "train"
    snow: bool = False
    cloud: bool = False
    categories: tuple[str, ...] = field(default=())  # what M2S-GL should label it with (() = dropped)

    @property
    def patch_id(self) -> str:
        return f"{TILE}_{self.row}_{self.row % 7}"


# Every patch has its expected M2S-GL categories (m2s-gl.yaml: a class counts from 144 pixels).
PATCHES = (
    Patch(10, {311: 14400}, "train", categories=("forest",)),
    Patch(11, {312: 8000, 211: 6400}, "train", categories=("forest", "crop")),
    Patch(12, {124: 10000, 122: 4400}, "validation", categories=("transport", "airport")),
    Patch(13, {123: 3000, 523: 11400}, "test", categories=("sea", "port")),
    Patch(14, {142: 100, 112: 14300}, "train"),  # a sliver of sport facilities, the rest unmapped: dropped
    Patch(15, {311: 14400}, "train", cloud=True),  # flagged: excluded
    Patch(16, {231: 14400}, "test", snow=True),  # flagged: excluded
    Patch(17, {331: 7200, 523: 7200}, "validation", categories=("sea", "beach")),
    Patch(18, {231: 14000, 142: 400}, "train", categories=("pasture", "sport")),
    Patch(19, {121: 12000, 512: 2400}, "test", categories=("water_body", "industry")),
    Patch(20, {111: 14400}, "train"),  # urban fabric is in no category: dropped
    Patch(21, {313: 7000, 321: 7400}, "train", categories=("forest", "grassland")),
)


def band_constant(band: str) -> int:
    """20 m and 60 m bands are constant per band, so any resampling keeps the value (band order checks)."""
    return 1000 + 10 * list(BANDS).index(band)


def write_raster(path: Path, data: np.ndarray) -> None:
    write_geotiff(path, data[None].astype(np.uint16), crs="EPSG:32633", pixel=1200 / data.shape[-1])


def reference_map(patch: Patch) -> np.ndarray:
    flat = np.full(120 * 120, 999, dtype=np.uint16)
    start = 0
    for code, pixels in patch.codes.items():
        flat[start:start + pixels] = code
        start += pixels
    return flat.reshape(120, 120)


def make_tree(root: Path, patches=PATCHES, seed: int = 0) -> Path:
    """The extracted layout: BigEarthNet-S2/, Reference_Maps/ and metadata.parquet under `root`."""
    rng = np.random.default_rng(seed)
    for patch in patches:
        folder = f"{TILE}/{patch.patch_id}"
        for band, size in BANDS.items():
            data = rng.integers(0, 5000, size=(size, size)) if size == 120 else np.full((size, size), band_constant(band))
            write_raster(root / "BigEarthNet-S2" / folder / f"{patch.patch_id}_{band}.tif", data)
        write_raster(root / "Reference_Maps" / folder / f"{patch.patch_id}_reference_map.tif", reference_map(patch))
    table = pd.DataFrame({
        "patch_id": [p.patch_id for p in patches],
        "labels": [sorted({CORINE_19[c] for c in p.codes if c in CORINE_19}) for p in patches],
        "split": [p.split for p in patches],
        "country": ["Austria"] * len(patches),
        "s1_name": [f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_{p.row}_{p.row % 7}" for p in patches],
        "s2v1_name": [f"S2A_MSIL2A_20170613T101031_{p.row}_{p.row % 7}" for p in patches],
        "contains_seasonal_snow": [p.snow for p in patches],
        "contains_cloud_or_shadow": [p.cloud for p in patches],
    })
    table.to_parquet(root / "metadata.parquet", index=False)
    return root


def tar_parts(root: Path, tree: str, out_dir: Path, parts: int) -> list[Path]:
    """`<tree>.tar.gz` of root/tree, cut into `parts` byte ranges named .tar.gzaa, .tar.gzab, ..."""
    whole = out_dir / f"{tree}.tar.gz"
    with tarfile.open(whole, "w:gz") as archive:
        archive.add(root / tree, arcname=tree)
    data = whole.read_bytes()
    whole.unlink()
    cut = -(-len(data) // parts)
    paths = []
    for i in range(parts):
        path = out_dir / f"{tree}.tar.gza{'abcdefgh'[i]}"
        path.write_bytes(data[i * cut:(i + 1) * cut])
        paths.append(path)
    return paths


def make_archives(out_dir: Path, patches=PATCHES, seed: int = 0) -> dict[str, Path]:
    staging = make_tree(out_dir / "bigearthnet-staging", patches, seed)
    files = {p.name: p for p in tar_parts(staging, "BigEarthNet-S2", out_dir, 2)}
    files.update({p.name: p for p in tar_parts(staging, "Reference_Maps", out_dir, 1)})
    files["metadata.parquet"] = out_dir / "metadata.parquet"
    (staging / "metadata.parquet").replace(files["metadata.parquet"])
    return files
