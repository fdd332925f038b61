"""Build throughput vs the bare decode of the same files (images/s).

Writes an extracted S2S-EU source tree in the published layouts (EuroSAT all-bands GeoTIFFs,
RESISC45 256 px JPEGs; generators from tests/data), then times `build_dataset` on it (decode,
band selection, resize, shards, checksums, manifest; no MI) against reading the same files with
rasterio / PIL and nothing else. Budget (DESIGN section 9): build within 1.5x of bare decode.

    python bench/build.py [--ms-per-class 200] [--rgb-per-class 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.data.eurosat import data as eurosat_data  # noqa: E402
from tests.data.resisc45 import data as resisc45_data  # noqa: E402

from ackd_bench.data.build import build_dataset  # noqa: E402


def bare_decode(tree: Path) -> int:
    count = 0
    for path in sorted((tree / eurosat_data.TREE).rglob("*.tif")):
        with rasterio.open(path) as src:
            src.read()
        count += 1
    for path in sorted((tree / "NWPU-RESISC45").rglob("*.jpg")):
        with Image.open(path) as image:
            np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS))
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ms-per-class", type=int, default=200)
    parser.add_argument("--rgb-per-class", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="build with these decode workers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "sources"
        eurosat_data.make_tree(tree, per_class=args.ms_per_class)
        resisc45_data.make_tree(tree, per_class=args.rgb_per_class)
        bare_decode(tree)  # warm the page cache for both measurements
        start = time.perf_counter()
        images = bare_decode(tree)
        bare = time.perf_counter() - start
        builds = {}
        for workers in args.workers:
            start = time.perf_counter()
            build_dataset("s2s-eu", Path(tmp) / f"out-{workers}", source_dir=tree, download=False, progress=False,
                          workers=workers)
            builds[workers] = time.perf_counter() - start
    print(f"{'path':<24}{'images':>8}{'seconds':>10}{'images/s':>10}{'vs bare':>9}   (target <= 1.5x)")
    print(f"{'bare decode (1 process)':<24}{images:>8}{bare:>10.2f}{images / bare:>10.0f}")
    for workers, seconds in builds.items():
        label = f"build, --workers {workers}"
        print(f"{label:<24}{images:>8}{seconds:>10.2f}{images / seconds:>10.0f}{seconds / bare:>8.2f}x")


if __name__ == "__main__":
    main()
