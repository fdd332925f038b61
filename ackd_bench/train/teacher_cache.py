"""Frozen-teacher outputs, computed once per (dataset version, teacher checkpoint, MS bands fed).

MS inputs are never augmented, so a teacher's logits, pooled features and tokens for every MS
train sample are fixed: students read them from memory instead of running the teacher. Logits and
pooled features are stored in float32, tokens in float16 (they are only used by SemBridge's
Planner). The cache lives in the user's own folder (`$ACKD_BENCH_HOME/cache/`), never beside the
teacher: a teacher's folder may be somebody else's (a shared or read-only run folder), and a cache
found there would be trusted with nothing binding it to the teacher. The file name is the hash of
what produced it (dataset version, the teacher's sha256, the MS bands fed, the split), and these
are checked again on load. The folder keeps at most CACHE_BYTES; the least recently used go first.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..data.dataset import ShardDataset
from ..data.manifest import Manifest
from ..errors import AckdError
from ..models.backbones import backbone_from_meta
from ..provenance import sha256_file
from .device import place
from .checkpoint import (MODEL_LIMITS, CheckpointError, check_compatible, load_checkpoint, load_weights, require_fields, save_tensors,
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
    try:
        with untouched_rng():
            teacher = backbone_from_meta(state)
    except AckdError as exc:  # the checkpoint's metadata names what the model is
        raise CheckpointError(f"{path}: {exc}") from None
    load_weights(teacher, {k.removeprefix("backbone."): v for k, v in state["module"].items()}, path,
                 f"a {state['arch']} teacher with {state['in_channels']} bands and {state['num_classes']} classes")
    teacher.eval().requires_grad_(False)
    return teacher, state


CACHE_BYTES = 16 * 2**30  # the grid's six teachers on three datasets; evicted oldest-used first beyond it
CACHE_PATTERN = "teacher-outputs-*.pt"


def cache_file(keys: dict[str, Any]) -> Path:
    """Where the outputs produced under `keys` are kept: the user's cache, named by their hash."""
    from ..home import user_home
    from ..provenance import config_hash

    return user_home() / "cache" / f"teacher-outputs-{keys['split']}-{config_hash(keys)[:32]}.pt"


def _evict_beyond(folder: Path, limit: int, keep: Path) -> None:
    """Remove the least recently used cache files of `folder` (only the tool's own, by its pattern in its
    own folder) until the rest fit in `limit` bytes; `keep` is the one just written or read."""
    try:
        files = sorted(((p.stat().st_mtime_ns, p.stat().st_size, p) for p in folder.glob(CACHE_PATTERN)
                        if p.is_file() and not p.is_symlink()), reverse=True)
    except OSError:  # removed under us by a concurrent run's eviction
        return
    total = 0
    for _used, size, path in files:
        total += size
        if total > limit and path != keep:
            path.unlink(missing_ok=True)


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
    path = cache_file(keys)
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged cache file is derived data: rebuilt below
            stored = {}
        if isinstance(stored, dict) and stored.get("keys") == keys and stored["tensors"]["logits"].shape[0] == len(ms_train):
            with contextlib.suppress(OSError):
                os.utime(path)  # used now: the last to be evicted
            return TeacherCache(stored["tensors"], keys)
    teacher, _ = load_teacher(teacher_path, manifest, ms_train.bands)
    teacher = rt.place_module(teacher)
    outputs = predict(teacher, ms_train, rt, batch_size, outputs=OUTPUTS)
    tensors = {"logits": outputs["logits"], "pooled": outputs["pooled"], "tokens": outputs["tokens"].half()}
    if rt.ctx.is_main:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_tensors(path, {"keys": keys, "tensors": tensors})
            _evict_beyond(path.parent, CACHE_BYTES, keep=path)
        except (OSError, AckdError):  # a read-only or full home: the run uses its outputs from memory
            pass
    return TeacherCache(tensors, keys)


def require_teacher(path: str | Path | None, method: str) -> Path:
    """The teacher checkpoint: a local path, or `hf://ORG/REPO/PATH[@REV]` fetched from the hub."""
    if path is None:
        raise AckdError(f"--method {method} distils from a teacher: pass --teacher CHECKPOINT (from train-teacher, "
                        "or hf://ORG/REPO/best.pt)")
    from ..hub import resolve_checkpoint

    return resolve_checkpoint(path)
