"""Which MS teacher sample each RGB student sample learns from.

The sides are unpaired, so a pairing is a choice. Without SemBridge, an SCKD method gets the naive
one: a random MS sample of the student's class, redrawn every epoch from (seed, epoch) alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..data.dataset import ShardDataset
from ..errors import AckdError


def class_galleries(ms: ShardDataset) -> list[np.ndarray]:
    """MS sample indices per class; a multi-label patch belongs to every class among its labels."""
    num_classes = len(ms.classes)
    if ms.multilabel:
        multi = np.concatenate(list(ms.reader.read_column("multilabels"))).astype(bool)
        galleries = [np.flatnonzero(multi[:, c]) for c in range(num_classes)]
    else:
        galleries = [np.flatnonzero(ms.labels == c) for c in range(num_classes)]
    return galleries


def check_galleries(galleries: list[np.ndarray], student_labels: np.ndarray, classes: list[str]) -> None:
    needed = np.unique(student_labels)
    empty = [classes[c] for c in needed if len(galleries[c]) == 0]
    if empty:
        raise AckdError(f"no MS train sample for class(es) {', '.join(empty)}: students of these classes have no teacher")


def random_same_class(student_labels: np.ndarray, galleries: list[np.ndarray], seed: int, epoch: int) -> np.ndarray:
    rng = np.random.default_rng([seed, epoch, 7])
    pairs = np.empty(len(student_labels), dtype=np.int64)
    for c in np.unique(student_labels):
        members = np.flatnonzero(student_labels == c)
        pairs[members] = galleries[c][rng.integers(0, len(galleries[c]), size=len(members))]
    return pairs


class PairedStudentData(Dataset):
    """RGB samples with the image of their MS partner, fetched by (rgb index, ms index) keys: the
    batch sampler carries the epoch's pairing, so DataLoader workers that persist across epochs
    never hold a stale one."""

    def __init__(self, rgb: ShardDataset, ms: ShardDataset):
        self.rgb, self.ms = rgb, ms

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[dict[str, Any]]:
        samples = self.rgb.__getitems__([int(rgb) for rgb, _ in keys])
        partners = self.ms.__getitems__([int(ms) for _, ms in keys])
        for sample, partner in zip(samples, partners):
            sample["ms_image"] = partner["image"]
        return samples
