"""Analyses that a build records in its manifest and card (currently: within-class MI)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .card import write_card
from .manifest import Manifest, MiSummary, verify_for_training, write_manifest
from .mi import summary, within_class_mi, write_mi

DEFAULT_PAIRS = 100


def default_pairs(manifest: Manifest, split: str = "train") -> int:
    """At most 100 pairs per class, fewer where a class has fewer samples on either side."""
    smallest = min(n for m in ("ms", "rgb") for n in manifest.counts[m][split].values())
    return max(1, min(DEFAULT_PAIRS, smallest))


def run_mi(root: str | Path, *, pairs: int | None = None, bins: int = 16, seed: int = 0,
           out_dir: str | Path | None = None) -> dict[str, Any]:
    """Compute MI, write analysis/mi.csv + mi.png, record the summary in the manifest and card."""
    root = Path(root)
    manifest = verify_for_training(root)  # what training checks: the analysis reads the same shards
    pairs = pairs or default_pairs(manifest)
    rows = within_class_mi(root, pairs=pairs, bins=bins, seed=seed)
    title = f"{manifest.dataset}: within-class MI, MS pseudo-RGB vs RGB ({bins} bins, {pairs} pairs/class)"
    csv_path, png_path = write_mi(rows, out_dir or root / "analysis", title)
    manifest = replace(manifest, mi=MiSummary(**summary(rows, seed), csv=csv_path.name))
    write_manifest(root, manifest)
    write_card(root, manifest)
    return {"rows": rows, "csv": csv_path, "png": png_path, "summary": manifest.mi}
