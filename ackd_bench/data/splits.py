"""Stable, hash-based train/val/test assignment.

A sample's split depends only on (salt, source id): rebuilding gives identical splits, and adding or
removing a file never moves another one. Every class is split independently by the same fractions,
so the per-class proportions hold in expectation; the realised per-class counts go into the
manifest. (Exact per-class quotas would require ranking within a class, and then adding one file
could move its neighbours.)
"""

from __future__ import annotations

import hashlib
from typing import Mapping

SPLITS = ("train", "val", "test")


def split_position(source_id: str, salt: str) -> float:
    """Uniform number in [0, 1) derived from sha256(salt, source_id)."""
    digest = hashlib.sha256(f"{salt}\x00{source_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(source_id: str, salt: str, fractions: Mapping[str, float]) -> str:
    position = split_position(source_id, salt)
    cumulative = 0.0
    for split in SPLITS:
        cumulative += fractions[split]
        if position < cumulative:
            return split
    return SPLITS[-1]


def validate_fractions(fractions: Mapping[str, float], where: str) -> dict[str, float]:
    from ..errors import RecipeError

    if set(fractions) != set(SPLITS):
        raise RecipeError(f"{where}: split fractions must name exactly {', '.join(SPLITS)}; got {sorted(fractions)}")
    values = {split: float(fractions[split]) for split in SPLITS}
    if any(v <= 0 for v in values.values()) or abs(sum(values.values()) - 1.0) > 1e-6:
        raise RecipeError(f"{where}: split fractions must be positive and sum to 1; got {values}")
    return values
