"""Shard loader vs per-file GeoTIFF reads (the reference code's path), samples/s.

Builds the toy benchmark, writes every train image of both modalities to its own GeoTIFF (as
EuroSAT and the reference code store them), then loads the same samples in the same random order
through a DataLoader (batch 64, main process) over `ShardDataset` and over a per-file dataset
that calls `rasterio.open(...).read()`, both producing the same normalised float tensors.
Budget (DESIGN section 9): shards >= 20x faster. Rows for lzf (the default) and uncompressed
shards show what the compression costs.

    python bench/loader.py [--samples 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
from torch.utils.data import DataLoader, Dataset

from ackd_bench.data.build import build_dataset
from ackd_bench.data.dataset import ShardDataset
from ackd_bench.data.recipe import Recipe, load_recipe

warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)


class GeoTiffDataset(Dataset):
    """The per-file path: each sample's GeoTIFF(s) opened and decoded when it is asked for."""

    def __init__(self, paths: list[list[Path]], labels: np.ndarray, like: ShardDataset):
        self.paths, self.labels, self.like = paths, labels, like

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        bands = []
        for path in self.paths[index]:
            with rasterio.open(path) as src:
                bands.append(src.read())
        image = self.like.normalise(np.concatenate(bands))
        return {"image": image, "label": int(self.labels[index]), "index": index}


def export_geotiffs(dataset: ShardDataset, out: Path, per_band: bool) -> list[list[Path]]:
    """One multi-band file per sample (EuroSAT's layout) or one file per band (BigEarthNet's)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(dataset)):
        image = dataset.reader.read(i)
        parts = [image[b:b + 1] for b in range(image.shape[0])] if per_band else [image]
        files = []
        for b, part in enumerate(parts):
            path = out / f"{i:06d}_{b}.tif"
            with rasterio.open(path, "w", driver="GTiff", width=part.shape[2], height=part.shape[1],
                               count=part.shape[0], dtype=part.dtype.name) as dst:
                dst.write(part)
            files.append(path)
        paths.append(files)
    return paths


def samples_per_second(dataset: Dataset, order: np.ndarray, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        loader = DataLoader(dataset, batch_size=64, sampler=order.tolist(), num_workers=0)
        start = time.perf_counter()
        for _batch in loader:
            pass
        best = max(best, len(order) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4096, help="random samples per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="best of N")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for compression in ("lzf", "none"):
            raw = copy.deepcopy(load_recipe("toy").raw)
            raw["shards"]["compression"] = compression
            root = Path(tmp) / compression
            build_dataset("toy", root, progress=False, recipe=Recipe.from_dict(raw, f"toy, {compression} shards"))
            for modality, per_band in (("ms", False), ("ms", True), ("rgb", False)):
                shards = ShardDataset(root, modality, "train")
                out = Path(tmp) / f"tif-{modality}-{per_band}"
                tiffs = GeoTiffDataset(export_geotiffs(shards, out, per_band), shards.labels, shards)
                order = rng.integers(0, len(shards), size=args.samples)
                shard_rate = samples_per_second(shards, order, args.repeats)
                tif_rate = samples_per_second(tiffs, order, args.repeats)
                shape = "x".join(map(str, shards.reader.read(0).shape))
                size_mb = sum(p.stat().st_size for p in shards.reader.paths) / 1e6
                layout = "file per band" if per_band else "file per image"
                rows.append((modality, compression, shape, size_mb, shard_rate, layout, tif_rate))
    print(f"{'modality':<9}{'shards':<7}{'sample':<11}{'MB':>6}{'shards/s':>10}  {'geotiff layout':<15}"
          f"{'geotiff/s':>10}{'ratio':>8}   (target >= 20x)")
    for modality, compression, shape, size_mb, shard_rate, layout, tif_rate in rows:
        print(f"{modality:<9}{compression:<7}{shape:<11}{size_mb:>6.1f}{shard_rate:>10.0f}  {layout:<15}"
              f"{tif_rate:>10.0f}{shard_rate / tif_rate:>7.1f}x")


if __name__ == "__main__":
    main()
