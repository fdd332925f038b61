"""Analyses that a build records in its manifest and card (currently: within-class MI)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import AckdError
from .card import write_card
from .manifest import Manifest, MiSummary, verify_for_training, write_manifest
from .mi import summary, within_class_mi, write_mi

DEFAULT_PAIRS = 100


def default_pairs(manifest: Manifest, split: str = "train") -> int:
    """At most 100 pairs per class, fewer where a class has fewer samples on either side."""
    smallest = min(n for m in ("ms", "rgb") for n in manifest.counts[m][split].values())
    return max(1, min(DEFAULT_PAIRS, smallest))


MAX_PAIRS = 100_000  # per class: above every benchmark's largest class
MAX_BINS = 256  # intensity bins: the 8-bit RGB side has 256 levels


def run_mi(root: str | Path, *, pairs: int | None = None, bins: int = 16, seed: int = 0,
           out_dir: str | Path | None = None) -> dict[str, Any]:
    """Compute MI, write analysis/mi.csv + mi.png, record the summary in the manifest and card."""
    root = Path(root)
    # checked before anything is read or written: a meaningless result never reaches the manifest
    for name, value, low, high in (("--pairs", pairs, 1, MAX_PAIRS), ("--bins", bins, 2, MAX_BINS),
                                   ("--seed", seed, 0, 2**32 - 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
            raise AckdError(f"{name} {value}: expected a whole number from {low} to {high:,}")
    manifest = verify_for_training(root)  # what training checks: the analysis reads the same shards
    pairs = pairs or default_pairs(manifest)
    rows = within_class_mi(root, pairs=pairs, bins=bins, seed=seed)
    title = f"{manifest.dataset}: within-class MI, MS pseudo-RGB vs RGB ({bins} bins, {pairs} pairs/class)"
    csv_path, png_path = write_mi(rows, out_dir or root / "analysis", title)
    mi = MiSummary(**summary(rows, seed), csv=csv_path.name)
    if out_dir is None:  # the dataset's own analysis; with --out the dataset folder is left as it was
        manifest = replace(manifest, mi=mi)
        write_manifest(root, manifest)
        write_card(root, manifest)
    return {"rows": rows, "csv": csv_path, "png": png_path, "summary": mi}
