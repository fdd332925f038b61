"""SemBridge's mechanism measured on toy, where every sample's sub-type is known: the measurements
bench/mechanism.py prints, kept beside it (an analysis of toy, not a part of the toolkit).

SemBridge helps when the MS partner it picks for an RGB image tells the student something a random
partner of the same class does not. On toy that needs two things, measured here per seed:

- the teacher's soft labels (temperature 3) differ between the sub-types of a class: the L1
  distance between sub-type means, against the spread of single images about their sub-type's mean;
- the partners share the RGB image's sub-type more often than chance: SSM's table and each DynM
  re-match, against the naive random same-class pairing and against chance
  (sum_k p_rgb(k | class) * p_ms(k | class), the sub-type frequencies of the two train splits).

The matcher's own top-1 pair retrieval on MS val (its selection metric) is reported with them.

Hubs: for every pair table, the distinct partners per class, the largest number of a class's
students sharing one partner, and the table of the RGB image's sub-type against its partner's (a
pairing that ignores the image has rows alike; one that follows it, a heavy diagonal).

The partners are indices into the run's MS gallery (options.ms_gallery: MS train, or train+val
under `paper`), whose sub-types are read from the same split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ackd_bench.data.dataset import ShardDataset, class_galleries
from ackd_bench.data.recipe import Recipe
from ackd_bench.data.toy import ToyGenerator
from ackd_bench.errors import AckdError
from ackd_bench.train.pairing import random_same_class


def toy_subtypes(data: ShardDataset) -> np.ndarray:
    """Each sample's sub-type, from the toy generator of the dataset's own recipe and its source id
    (toy/SIDE/CLASS/INDEX)."""
    manifest = data.manifest
    if manifest.dataset != "toy" or not manifest.recipe:
        raise AckdError(f"{data.root}: sub-types are known only for a toy build with its recipe, not {manifest.dataset}")
    generator = ToyGenerator(Recipe.from_dict(manifest.recipe, f"{data.root} manifest recipe"))
    subtypes = []
    for source_id, label in zip(data.source_ids(), data.labels):
        _toy, side, _name, index = source_id.split("/")
        subtypes.append(generator.subtype(side, int(label), int(index)))
    return np.asarray(subtypes, dtype=np.int64)


def pair_agreement(pairs: np.ndarray, student_subtypes: np.ndarray, gallery_subtypes: np.ndarray) -> float:
    """The share of students whose partner (an index into the gallery) has the student's sub-type."""
    return float(np.mean(gallery_subtypes[np.asarray(pairs)] == student_subtypes))


def chance_agreement(student_labels: np.ndarray, student_subtypes: np.ndarray, gallery_labels: np.ndarray,
                     gallery_subtypes: np.ndarray) -> float:
    """What a partner drawn at random from the student's class agrees on, in expectation: per student,
    the share of its class's gallery with its sub-type (= sum_k p_rgb(k|c) p_ms(k|c), weighted by class)."""
    shares = np.empty(len(student_labels))
    for c in np.unique(student_labels):
        gallery = gallery_subtypes[gallery_labels == c]
        members = student_labels == c
        shares[members] = [np.mean(gallery == k) if len(gallery) else 0.0 for k in student_subtypes[members]]
    return float(shares.mean())


def soft_label_separation(logits: np.ndarray, labels: np.ndarray, subtypes: np.ndarray,
                          temperature: float = 3.0) -> tuple[float, float]:
    """(between, within) over the classes: `between`, the mean L1 distance between the mean soft labels
    of two sub-types of a class; `within`, the mean L1 distance of an image's soft label from its
    sub-type's mean. Sub-types with no image in a class are left out."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    between, within = [], []
    for c in np.unique(labels):
        means = {}
        for k in np.unique(subtypes[labels == c]):
            members = probs[(labels == c) & (subtypes == k)]
            means[k] = members.mean(axis=0)
            within.extend(np.abs(members - means[k]).sum(axis=1))
        keys = sorted(means)
        between.extend(np.abs(means[a] - means[b]).sum() for i, a in enumerate(keys) for b in keys[i + 1:])
    return (float(np.mean(between)) if between else float("nan")), float(np.mean(within))


def naive_agreement(rgb: ShardDataset, ms: ShardDataset, rgb_subtypes: np.ndarray, ms_subtypes: np.ndarray,
                    seed: int, epochs: int) -> float:
    """The naive pairing's agreement, averaged over the epochs of a run (it redraws every epoch)."""
    galleries = class_galleries(ms)
    return float(np.mean([pair_agreement(random_same_class(rgb.labels, galleries, seed, epoch), rgb_subtypes,
                                         ms_subtypes) for epoch in range(epochs)]))


@torch.no_grad()
def teacher_logits(teacher_path: str | Path, data: ShardDataset, batch_size: int = 256) -> np.ndarray:
    from ackd_bench.train.teacher_cache import load_teacher

    teacher, _state = load_teacher(teacher_path, data.manifest)
    rows = []
    for start in range(0, len(data), batch_size):
        batch = data.__getitems__(list(range(start, min(start + batch_size, len(data)))))
        rows.append(teacher(torch.stack([s["image"] for s in batch]))["logits"].float())
    return torch.cat(rows).numpy()


@dataclass
class Hubs:
    """One pair table's concentration: per class, distinct partners and the most students sharing one;
    and counts of (RGB sub-type, partner sub-type)."""

    distinct: list[int]
    largest: list[int]
    students: list[int]
    subtypes: list[list[int]]

    @classmethod
    def of(cls, pairs: np.ndarray, student_labels: np.ndarray, student_subtypes: np.ndarray,
           gallery_subtypes: np.ndarray, n_subtypes: int = 3) -> "Hubs":
        pairs = np.asarray(pairs)
        classes = np.unique(student_labels)
        distinct = [len(np.unique(pairs[student_labels == c])) for c in classes]
        largest = [int(np.bincount(pairs[student_labels == c]).max()) for c in classes]
        students = [int(np.sum(student_labels == c)) for c in classes]
        table = np.zeros((n_subtypes, n_subtypes), dtype=np.int64)
        np.add.at(table, (student_subtypes, gallery_subtypes[pairs]), 1)
        return cls(distinct, largest, students, table.tolist())

    def text(self) -> str:
        rows = "; ".join(" ".join(str(v) for v in row) for row in self.subtypes)
        return (f"partners {min(self.distinct)}-{max(self.distinct)} per class of {min(self.students)}-"
                f"{max(self.students)} students, largest hub {min(self.largest)}-{max(self.largest)}; "
                f"sub-type RGB x partner [{rows}]")


@dataclass
class SeedMechanism:
    seed: int
    teacher_oa: float
    soft_between: float
    soft_within: float
    matcher_top1: float
    chance: float
    naive: float
    tables: list[tuple[str, float]] = field(default_factory=list)  # ("SSM" or "DynM@e"), agreement
    hubs: list[tuple[str, Hubs]] = field(default_factory=list)  # ("SSM" or "DynM@e"), concentration
    student_oa: float | None = None
    frequencies: dict[str, list[float]] = field(default_factory=dict)  # side -> share of each sub-type (train)


def gallery_of(profile: str) -> str:
    """The MS split a student's partners index under `profile` (options.ms_gallery, options.protocol)."""
    from ackd_bench.data.splits import gallery_split
    from ackd_bench.train.profiles import load_profile

    options = load_profile(profile)["options"]
    return gallery_split(options["protocol"], options["ms_gallery"])


def measure_seed(dataset_dir: str | Path, seed: int, profile: str, options) -> SeedMechanism:
    """Train (or reuse, through `options.runs_root`) the S/S teacher and matcher of `seed`; train a
    SemBridge student (always anew: its pair tables are observed while it trains) and measure."""
    from dataclasses import replace

    from ackd_bench.train.api import train_classifier, train_matcher, train_student
    from ackd_bench.train.pairing import observed_pairings
    from ackd_bench.train.request import RunRequest

    teacher = train_classifier(RunRequest.teacher_run(dataset_dir, "S", profile=profile, seed=seed), options)
    teacher_path = Path(teacher["run_dir"]) / "checkpoints" / "best.pt"
    matcher = train_matcher(RunRequest.matcher_run(dataset_dir, "S", profile=profile, seed=seed), options)
    matcher_path = Path(matcher["run_dir"]) / "checkpoints" / "best.pt"
    request = RunRequest.student_run(dataset_dir, "S", "sembridge", teacher=str(teacher_path),
                                     matcher=str(matcher_path), profile=profile, seed=seed)
    with observed_pairings() as tables:
        student = train_student(request, replace(options, reuse_finished=False, force=True))
    ms, rgb = ShardDataset(dataset_dir, "ms", gallery_of(profile)), ShardDataset(dataset_dir, "rgb", "train")
    ms_sub, rgb_sub = toy_subtypes(ms), toy_subtypes(rgb)
    between, within = soft_label_separation(teacher_logits(teacher_path, ms), ms.labels, ms_sub)
    names = ["SSM" if i == 0 else f"DynM@{epoch}" for i, (epoch, _pairs) in enumerate(tables)]
    agreements = [(name, pair_agreement(pairs, rgb_sub, ms_sub)) for name, (_e, pairs) in zip(names, tables)]
    hubs = [(name, Hubs.of(pairs, rgb.labels, rgb_sub, ms_sub)) for name, (_e, pairs) in zip(names, tables)]
    return SeedMechanism(
        seed=seed, teacher_oa=float(teacher["oa"]), soft_between=between, soft_within=within,
        matcher_top1=float(matcher["val_top1"]), chance=chance_agreement(rgb.labels, rgb_sub, ms.labels, ms_sub),
        naive=naive_agreement(rgb, ms, rgb_sub, ms_sub, seed, int(student["epochs"])), tables=agreements, hubs=hubs,
        student_oa=float(student["oa"]),
        frequencies={side: np.bincount(sub, minlength=3).tolist() for side, sub in (("ms", ms_sub), ("rgb", rgb_sub))})


def render_mechanism(rows: list[SeedMechanism]) -> str:
    """One line per seed: the teacher's sub-type separation, the matcher, and the pair tables' agreement."""
    lines = ["| seed | teacher OA | soft-label L1 between sub-types | within one | matcher top-1 | chance | naive | "
             "SSM and DynM re-matches (sub-type agreement) | SemBridge OA | sub-types MS / RGB train |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tables = ", ".join(f"{name} {100 * a:.1f}" for name, a in r.tables) or "–"
        freq = " / ".join("-".join(map(str, r.frequencies.get(side, []))) for side in ("ms", "rgb"))
        oa = "–" if r.student_oa is None else f"{100 * r.student_oa:.1f}"
        lines.append(f"| {r.seed} | {100 * r.teacher_oa:.1f} | {r.soft_between:.3f} | {r.soft_within:.3f} | "
                     f"{100 * r.matcher_top1:.1f} | {100 * r.chance:.1f} | {100 * r.naive:.1f} | {tables} | {oa} | {freq} |")
    return "\n".join(lines)


def render_hubs(rows: list[SeedMechanism]) -> str:
    """One line per seed and pair table: how concentrated its partners are."""
    lines = ["| seed | table | distinct partners per class | students per class | largest hub per class | "
             "RGB sub-type (rows) x partner sub-type |", "|---|---|---|---|---|---|"]
    for r in rows:
        for name, h in r.hubs:
            table = "; ".join(" ".join(str(v) for v in row) for row in h.subtypes)
            lines.append(f"| {r.seed} | {name} | {min(h.distinct)}-{max(h.distinct)} | {min(h.students)}-"
                         f"{max(h.students)} | {min(h.largest)}-{max(h.largest)} | {table} |")
    return "\n".join(lines)
