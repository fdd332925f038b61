"""Capped, class-balanced subsets of a source, chosen by hash so that they are stable.

A candidate's rank is sha256(salt, 'select', source id), independent of its split position: the
same files are chosen on every rebuild, and adding a file to the source can only displace the
candidate that now ranks just below the cap.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import replace
from typing import Iterable, Sequence

from .shards import SampleRef


def selection_rank(source_id: str, salt: str) -> bytes:
    return hashlib.sha256(f"{salt}\x00select\x00{source_id}".encode()).digest()


def cap_per_class(refs: Iterable[SampleRef], cap: int | None, salt: str) -> list[SampleRef]:
    """At most `cap` samples per label, the lowest-ranked ones; all of them when cap is None."""
    refs = list(refs)
    if cap is None:
        return refs
    by_label: dict[int, list[SampleRef]] = defaultdict(list)
    for ref in refs:
        by_label[ref.label].append(ref)
    kept = []
    for label in sorted(by_label):
        kept += sorted(by_label[label], key=lambda r: selection_rank(r.source_id, salt))[:cap]
    return kept


def balance_multilabel(candidates: Sequence[SampleRef], num_classes: int, cap: int | None, salt: str) -> list[SampleRef]:
    """A class-balanced subset of multi-label samples.

    Classes are filled rarest first; each takes up to `cap` not-yet-chosen candidates that carry it,
    in rank order, and those samples get it as their primary `label` (the category they were drawn
    for; their `multilabel` keeps every category). A sample chosen for a rare class still counts
    towards the others it carries, so common classes are not starved of co-occurring samples, but
    they are not topped up beyond their own cap either.
    """
    carriers: dict[int, list[SampleRef]] = {c: [] for c in range(num_classes)}
    for ref in candidates:
        for c in ref.multilabel or ():
            carriers[c].append(ref)
    chosen: dict[str, SampleRef] = {}
    for c in sorted(carriers, key=lambda k: (len(carriers[k]), k)):
        ranked = sorted(carriers[c], key=lambda r: selection_rank(r.source_id, salt))
        budget = len(ranked) if cap is None else cap
        taken = sum(1 for r in ranked if r.source_id in chosen)
        for ref in ranked:
            if taken >= budget:
                break
            if ref.source_id not in chosen:
                chosen[ref.source_id] = replace(ref, label=c)
                taken += 1
    return sorted(chosen.values(), key=lambda r: r.source_id)
