"""Frozen-teacher outputs, computed once per (dataset version, teacher checkpoint, MS bands fed).

MS inputs are never augmented, so a teacher's logits, pooled features and tokens for every MS
train sample are fixed: students read them from memory instead of running the teacher. Logits and
pooled features are stored in float32, tokens in float16 (they are only used by SemBridge's
Planner). The file name carries the dataset version and the teacher's sha256; these and the MS
bands (the run's selection, which the teacher must have been trained on) are checked again on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..data.dataset import ShardDataset
from ..data.manifest import Manifest
from ..errors import AckdError
from ..models.backbones import backbone_from_meta
from ..provenance import atomic_path, sha256_file
from .device import place
from .checkpoint import (MODEL_LIMITS, CheckpointError, check_compatible, load_checkpoint, load_weights, require_fields,
                         untouched_rng)
from .engine import Runtime
from .runs import predict

OUTPUTS = ("logits", "pooled", "tokens")


def check_teacher(path: str | Path, manifest: Manifest, ms_bands: Sequence[str] | None = None) -> dict[str, Any]:
    """A teacher checkpoint's contents, after checking that it fits the dataset and the MS bands
    the run feeds (`ms_bands`; default: every stored band)."""
    state = load_checkpoint(path)
    check_compatible(state, {"kind": "teacher"}, path)
    wanted = list(manifest.modalities["ms"].bands if ms_bands is None else ms_bands)
    have = state.get("bands")
    if have != wanted:
        shown = " ".join(map(str, have)) if isinstance(have, list) else repr(have)
        raise CheckpointError(f"{path}: a teacher of MS bands {shown[:200]}, but this run feeds {' '.join(wanted)} "
                              "(options.ms_bands): use a teacher trained on the same band set")
    check_compatible(state, {"classes": list(manifest.classes)}, path)
    check_compatible(state, {"dataset_version": manifest.dataset_version}, path)
    require_fields(state, ("arch", "in_channels", "num_classes", "module"), path)
    return state


def teacher_bands(path: str | Path) -> list[str]:
    """The MS bands a teacher checkpoint was trained on (what an analysis of it must feed)."""
    bands = load_checkpoint(path).get("bands")
    if not isinstance(bands, list) or not 0 < len(bands) <= MODEL_LIMITS["in_channels"] or not all(
            isinstance(b, str) and 0 < len(b) <= 16 for b in bands):
        raise CheckpointError(f"{path}: not an ackd-bench teacher checkpoint (no list of MS band names)")
    return bands


def load_teacher(path: str | Path, manifest: Manifest, ms_bands: Sequence[str] | None = None
                 ) -> tuple[nn.Module, dict[str, Any]]:
    """The teacher of a checkpoint, frozen in eval mode, after checking it fits the dataset and the
    MS bands the run feeds."""
    state = check_teacher(path, manifest, ms_bands)
    with untouched_rng():
        teacher = backbone_from_meta(state)
    load_weights(teacher, {k.removeprefix("backbone."): v for k, v in state["module"].items()}, path,
                 f"a {state['arch']} teacher with {state['in_channels']} bands and {state['num_classes']} classes")
    teacher.eval().requires_grad_(False)
    return teacher, state


def cache_file(teacher_path: Path, dataset_version: str, teacher_sha: str, split: str = "train") -> Path:
    return teacher_path.parent.parent / "cache" / f"teacher-outputs-{split}-{dataset_version[:16]}-{teacher_sha[:16]}.pt"


class TeacherCache:
    def __init__(self, tensors: dict[str, torch.Tensor], keys: dict[str, str]):
        self.tensors, self.keys = tensors, keys

    def to(self, device: torch.device) -> "TeacherCache":
        return TeacherCache({k: place(v, device) for k, v in self.tensors.items()}, self.keys)

    @property
    def device(self) -> torch.device:
        return next(iter(self.tensors.values())).device

    def lookup(self, indices: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        """Outputs of the MS samples `indices` as float32 on `device`: a gather where the cache lives
        there (a host cache costs a round trip per call: train with it on the device)."""
        indices = place(indices, self.device)
        return {k: place(v[indices], device, non_blocking=True).float() for k, v in self.tensors.items()}

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


def build_or_load_cache(teacher_path: str | Path, ms_train: ShardDataset, rt: Runtime, batch_size: int = 256,
                        progress: bool = True) -> TeacherCache:
    teacher_path = Path(teacher_path)
    manifest = ms_train.manifest
    keys = {"dataset_version": manifest.dataset_version, "teacher_sha256": sha256_file(teacher_path),
            "ms_bands": list(ms_train.bands), "split": ms_train.split}
    path = cache_file(teacher_path, keys["dataset_version"], keys["teacher_sha256"], ms_train.split)
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged or foreign cache file is derived data: rebuilt below
            stored = {}
        if stored.get("keys") == keys and stored["tensors"]["logits"].shape[0] == len(ms_train):
            return TeacherCache(stored["tensors"], keys)
    for stale in path.parent.glob(f"teacher-outputs-{ms_train.split}-*.pt"):  # another dataset version or checkpoint
        if rt.ctx.is_main and stale != path:  # this one is replaced atomically: a concurrent student may be reading it
            stale.unlink(missing_ok=True)
    teacher, _ = load_teacher(teacher_path, manifest, ms_train.bands)
    teacher = rt.place_module(teacher)
    outputs = predict(teacher, ms_train, rt, batch_size, outputs=OUTPUTS)
    tensors = {"logits": outputs["logits"], "pooled": outputs["pooled"], "tokens": outputs["tokens"].half()}
    if rt.ctx.is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({"keys": keys, "tensors": tensors}, tmp)
    return TeacherCache(tensors, keys)


def require_teacher(path: str | Path | None, method: str) -> Path:
    """The teacher checkpoint: a local path, or `hf://ORG/REPO/PATH[@REV]` fetched from the hub."""
    if path is None:
        raise AckdError(f"--method {method} distils from a teacher: pass --teacher CHECKPOINT (from train-teacher, "
                        "or hf://ORG/REPO/best.pt)")
    from ..hub import resolve_checkpoint

    return resolve_checkpoint(path)
