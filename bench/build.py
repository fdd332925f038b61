"""Build throughput vs the bare decode of the same files (images/s), per real recipe.

Writes an extracted source tree in the published layouts (generators from tests/data), then times
`build_dataset` on it (decode, band selection, resampling/resizing, paired controls, shards,
checksums, manifest; no MI) against reading the same files with rasterio / PIL and nothing else.
For M2S-GL the build also makes its one pass over the CORINE reference maps (labels), which the
bare decode does not. Budget (DESIGN section 9): build within 1.5x of bare decode.

    python bench/build.py [--dataset s2s-eu s2s-cn m2s-gl] [--per-class 100] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.data.aid import data as aid_data  # noqa: E402
from tests.data.bigearthnet import data as ben_data  # noqa: E402
from tests.data.eurosat import data as eurosat_data  # noqa: E402
from tests.data.nasc_tg2 import data as nasc_data  # noqa: E402
from tests.data.resisc45 import data as resisc45_data  # noqa: E402

from ackd_bench.data.build import build_dataset  # noqa: E402
from ackd_bench.data.recipe import Recipe, load_recipe  # noqa: E402
from ackd_bench.data.sources import BigEarthNetV2  # noqa: E402
from ackd_bench.data.sources.fetch import md5_file  # noqa: E402


def decode_jpegs(folder: Path, size: int) -> int:
    paths = sorted(folder.rglob("*.jpg"))
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.LANCZOS)
            np.asarray(image)
    return len(paths)


def decode_tifs(folder: Path) -> int:
    paths = sorted(folder.rglob("*.tif"))
    for path in paths:
        with rasterio.open(path) as src:
            src.read()
    return len(paths)


def rgb_classes(recipe: Recipe, source: str) -> list[str]:
    class_map = recipe.modalities["rgb"].class_maps[source]
    return sorted({c for names in class_map.values() for c in names})


def s2s_eu(tree: Path, per_class: int):
    eurosat_data.make_tree(tree, per_class=per_class)
    eurosat_data.make_rgb_tree(tree, per_class=per_class)
    resisc45_data.make_tree(tree, per_class=per_class)

    def bare() -> int:
        return (decode_tifs(tree / eurosat_data.TREE) + decode_jpegs(tree / "2750", 64)
                + decode_jpegs(tree / "NWPU-RESISC45", 64))
    return bare


def s2s_cn(tree: Path, per_class: int):
    nasc_data.make_tree(tree, per_class=per_class)
    resisc45_data.make_tree(tree, per_class=per_class, classes=rgb_classes(load_recipe("s2s-cn"), "resisc45"))

    def bare() -> int:
        return decode_tifs(tree / "MS") + decode_jpegs(tree / "RGB", 128) + decode_jpegs(tree / "NWPU-RESISC45", 128)
    return bare


def m2s_gl(tree: Path, per_class: int):
    recipe = load_recipe("m2s-gl")
    rng = np.random.default_rng(0)
    codes = [311, 211, 231, 512, 523, 121, 321, 511, 122, 331, 124, 123, 142]
    patches = [ben_data.Patch(row, {int(a): 10000, int(b): 4400}, ("train", "validation", "test")[row % 3])
               for row, (a, b) in enumerate(rng.choice(codes, size=(per_class * 4, 2)))]
    ben_data.make_tree(tree / "BigEarthNet", patches)
    (tree / "BigEarthNet" / "metadata.parquet").replace(tree / "metadata.parquet")
    BigEarthNetV2.metadata = dataclasses.replace(BigEarthNetV2.metadata, md5=md5_file(tree / "metadata.parquet"))
    resisc45_data.make_tree(tree, per_class=per_class // 4, classes=rgb_classes(recipe, "resisc45"))
    aid_data.make_tree(tree, per_class=per_class // 4, size=600)
    bands = recipe.modalities["ms"].bands

    def bare() -> int:
        for patch in patches:
            for band in bands:
                path = tree / "BigEarthNet" / "BigEarthNet-S2" / ben_data.TILE / patch.patch_id / f"{patch.patch_id}_{band}.tif"
                with rasterio.open(path) as src:
                    src.read(out_shape=(1, 120, 120))
        return len(patches) + decode_jpegs(tree / "NWPU-RESISC45", 120) + decode_jpegs(tree / "AID", 120)
    return bare


DATASETS = {"s2s-eu": s2s_eu, "s2s-cn": s2s_cn, "m2s-gl": m2s_gl}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--per-class", type=int, default=100, help="source files per class (M2S-GL: 4x patches)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="build with these decode workers")
    args = parser.parse_args()
    print(f"{'dataset':<8}{'path':<24}{'images':>8}{'seconds':>10}{'images/s':>10}{'vs bare':>9}   (target <= 1.5x)")
    for name in args.dataset:
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp) / "sources"
            bare_decode = DATASETS[name](tree, args.per_class)
            bare_decode()  # warm the page cache for both measurements
            start = time.perf_counter()
            images = bare_decode()
            bare = time.perf_counter() - start
            print(f"{name:<8}{'bare decode (1 process)':<24}{images:>8}{bare:>10.2f}{images / bare:>10.0f}")
            for workers in args.workers:
                start = time.perf_counter()
                build_dataset(name, Path(tmp) / f"out-{workers}", source_dir=tree, download=False, progress=False,
                              workers=workers)
                seconds = time.perf_counter() - start
                label = f"build, --workers {workers}"
                print(f"{name:<8}{label:<24}{images:>8}{seconds:>10.2f}{images / seconds:>10.0f}{seconds / bare:>8.2f}x",
                      flush=True)


if __name__ == "__main__":
    main()
