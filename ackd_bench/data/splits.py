"""Stable, hash-based train/val/test assignment, and what each reporting protocol uses them for.

A sample's split depends only on (salt, source id): rebuilding gives identical splits, and adding or
removing a file never moves another one. Every class is split independently by the same fractions,
so the per-class proportions hold in expectation; the realised per-class counts go into the
manifest. (Exact per-class quotas would require ranking within a class, and then adding one file
could move its neighbours.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping

from ..errors import DatasetError

SPLITS = ("train", "val", "test")


def split_parts(name: str) -> tuple[str, ...]:
    """The splits a split name lists: one (`val`), or several joined by `+` (`train+val`), read
    in that order."""
    parts = tuple(name.split("+")) if isinstance(name, str) else ()
    if not parts or any(p not in SPLITS for p in parts) or len(set(parts)) != len(parts):
        raise DatasetError(f"unknown split '{name}': expected one of {', '.join(SPLITS)}, or several of them joined "
                           "by + (train+val)")
    return parts


@dataclass(frozen=True)
class ProtocolSplits:
    """What a run of a reporting protocol trains on, selects its epoch on, and reports."""

    fit: str
    select: str
    report: str


# `heldout`: select the epoch on val, report test once. `reference`: the paper's code, which has no
# test set (train.py:98-100, 240, 272-292): it trains on one KFold's 80%, keeps the epoch best on the
# other 20% and reports that same number; here train+val and test (80/20 with the recipes' 60/20/20).
PROTOCOLS = {
    "heldout": ProtocolSplits("train", "val", "test"),
    "reference": ProtocolSplits("train+val", "test", "test"),
}


def gallery_split(protocol: str, gallery: str) -> str:
    """The MS images a student's partners are drawn from (options.ms_gallery): `train`, those the
    teacher trained on; `all`, every MS image the protocol lets training see. Under `heldout` that
    leaves out test, whose teacher outputs only the teacher's own test evaluation reads; under
    `reference` it is every image, as the reference's SSM and DynM galleries are
    (generator.py:30-36, 68-78; train.py:155-162)."""
    if gallery == "train":
        return PROTOCOLS[protocol].fit
    return "train+val" if protocol == "heldout" else "train+val+test"


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
