"""SemBridge's match table: SSM's initial teacher per student, re-matched by DynM on schedule.

The table is task state: it is saved with every checkpoint, so a resumed run continues with
exactly the pairs it had.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.dataset import ShardDataset
from ...train.checkpoint import check_compatible, load_checkpoint, load_weights, require_fields, untouched_rng
from ...train.engine import Runtime
from ...train.feed import Split, split_outputs
from .matcher import Matcher, build_matcher, embed
from .matching import dynm_match, ssm_match


def load_matcher(path: str | Path, manifest: dict[str, Any]) -> Matcher:
    state = load_checkpoint(path)
    check_compatible(state, {"kind": "matcher"}, path)
    check_compatible(state, {"dataset_version": manifest["dataset_version"]}, path)
    require_fields(state, ("arch", "matcher_params", "module"), path)
    with untouched_rng():
        matcher = build_matcher(manifest, state["arch"], state["matcher_params"])
    load_weights(matcher, state["module"], path, f"a {state['arch']} matcher")
    return matcher.eval().requires_grad_(False)


def ssm_pairs(matcher: Matcher, rgb_train: ShardDataset | Split, ms_train: ShardDataset | Split,
              galleries: list[np.ndarray], rt: Runtime, batch_size: int = 256) -> np.ndarray:
    matcher = matcher.to(rt.device)
    teacher_embeddings = embed(matcher.embed_ms, ms_train, rt, batch_size)
    student_embeddings = embed(matcher.embed_rgb, rgb_train, rt, batch_size)
    return ssm_match(student_embeddings, teacher_embeddings, rgb_train.labels, galleries)


class SemBridgePairing:
    def __init__(self, initial: np.ndarray, schedule: list[int], gallery_logits: torch.Tensor | None,
                 galleries: list[np.ndarray], gamma: float, batch_size: int, divergence: str = "teacher-student"):
        """`gallery_logits`: the teacher cache's logits, wherever the cache lives (device when resident)."""
        self.pairs = np.asarray(initial, dtype=np.int64)
        self.schedule, self.gallery_logits, self.galleries = list(schedule), gallery_logits, galleries
        self.gamma, self.batch_size, self.divergence = gamma, batch_size, divergence
        self.rematched: list[int] = []

    @property
    def dynamic(self) -> bool:
        return self.gallery_logits is not None

    def for_epoch(self, epoch: int, task) -> np.ndarray:
        if self.dynamic and epoch in self.schedule and epoch not in self.rematched:
            logits = split_outputs(task.module.backbone, task.rgb_split, task.rt, self.batch_size)["logits"]
            self.pairs = dynm_match(logits, self.gallery_logits, task.rgb_train.labels, self.galleries, self.gamma,
                                    divergence=self.divergence)
            self.rematched.append(epoch)
        return self.pairs

    def state(self) -> dict[str, Any]:
        return {"pairs": self.pairs.copy(), "rematched": list(self.rematched)}

    def load_state(self, state: dict[str, Any]) -> None:
        if state:
            self.pairs, self.rematched = np.asarray(state["pairs"]), list(state["rematched"])
