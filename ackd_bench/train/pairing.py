"""Which MS teacher sample each RGB student sample learns from.

The sides are unpaired, so a pairing is a choice. Without SemBridge, an SCKD method gets the naive
one: a random MS sample of the student's class, redrawn every epoch from (seed, epoch) alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
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
    """RGB samples carrying the index (and, for a live teacher, the image) of their MS partner."""

    def __init__(self, rgb: ShardDataset, ms: ShardDataset | None = None):
        self.rgb, self.ms = rgb, ms
        self.pairs = np.zeros(len(rgb), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        samples = self.rgb.__getitems__(indices)
        partners = self.pairs[np.asarray(indices)]
        ms_images = self.ms.__getitems__(partners.tolist()) if self.ms is not None else None
        for k, sample in enumerate(samples):
            sample["ms_index"] = int(partners[k])
            if ms_images is not None:
                sample["ms_image"] = ms_images[k]["image"]
        return samples


def as_tensor(values: Any) -> torch.Tensor:
    return values if isinstance(values, torch.Tensor) else torch.as_tensor(values)
