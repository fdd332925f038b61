"""Which MS teacher sample each RGB student sample learns from.

The sides are unpaired, so a pairing is a choice. Without SemBridge, an SCKD method gets the naive
one: a random MS sample of the student's class, redrawn every epoch from (seed, epoch) alone.
SemBridge's is a match table: SSM's initial teacher per student, re-matched by DynM on schedule.
The table is task state: it is saved with every checkpoint, so a resumed run continues with
exactly the pairs it had.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.dataset import ShardDataset
from ..errors import AckdError
from ..methods.sembridge.matcher import Matcher
from ..methods.sembridge.matching import dynm_match, ssm_match
from .engine import Runtime
from .feed import Split, as_split, split_outputs
from .matcher import embed


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


def ssm_pairs(matcher: Matcher, rgb_train: ShardDataset | Split, ms_train: ShardDataset | Split,
              galleries: list[np.ndarray], rt: Runtime, batch_size: int = 256) -> np.ndarray:
    matcher = rt.place_module(matcher)
    teacher_embeddings = embed(matcher.embed_ms, ms_train, rt, batch_size)
    student_embeddings = embed(matcher.embed_rgb, rgb_train, rt, batch_size)
    # the dataset's labels (host): a resident split's are on the device
    return ssm_match(student_embeddings, teacher_embeddings, as_split(rgb_train, rt).dataset.labels, galleries)


_OBSERVERS: list[Callable[[int, np.ndarray], None]] = []


@contextmanager
def observed_pairings() -> Iterator[list[tuple[int, np.ndarray]]]:
    """The pair tables SemBridge's pairing uses, as (epoch, student -> MS train index), for the runs made
    in this process inside the block: the first epoch's (SSM's) and each DynM re-match's. A measurement
    hook (bench/mechanism.py): a re-match is otherwise seen only through its effect on training."""
    tables: list[tuple[int, np.ndarray]] = []

    def observe(epoch: int, pairs: np.ndarray) -> None:
        tables.append((epoch, pairs.copy()))

    _OBSERVERS.append(observe)
    try:
        yield tables
    finally:
        _OBSERVERS.remove(observe)


class SemBridgePairing:
    def __init__(self, initial: np.ndarray, schedule: list[int], gallery_logits: torch.Tensor | None,
                 galleries: list[np.ndarray], gamma: float, batch_size: int, divergence: str = "teacher-student",
                 assignment: str = "argmin"):
        """`gallery_logits`: the teacher cache's logits, wherever the cache lives (device when resident)."""
        self.pairs = np.asarray(initial, dtype=np.int64)
        self.schedule, self.gallery_logits, self.galleries = list(schedule), gallery_logits, galleries
        self.gamma, self.batch_size, self.divergence, self.assignment = gamma, batch_size, divergence, assignment
        self.rematched: list[int] = []
        self._reported = False  # whether observed_pairings() has seen the table in use

    @property
    def dynamic(self) -> bool:
        return self.gallery_logits is not None

    def for_epoch(self, epoch: int, task) -> np.ndarray:
        new_table = not self._reported
        if self.dynamic and epoch in self.schedule and epoch not in self.rematched:
            logits = split_outputs(task.module.backbone, task.rgb_split, task.rt, self.batch_size)["logits"]
            self.pairs = dynm_match(logits, self.gallery_logits, task.rgb_train.labels, self.galleries, self.gamma,
                                    divergence=self.divergence, assignment=self.assignment)
            self.rematched.append(epoch)
            new_table = True
        if new_table:
            for observe in _OBSERVERS:
                observe(epoch, self.pairs)
            self._reported = True
        return self.pairs

    def state(self) -> dict[str, Any]:
        return {"pairs": self.pairs.copy(), "rematched": list(self.rematched)}

    def load_state(self, state: dict[str, Any]) -> None:
        if state:
            self.pairs, self.rematched = np.asarray(state["pairs"]), list(state["rematched"])
