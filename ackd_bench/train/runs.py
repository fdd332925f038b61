"""What teacher, matcher and student runs share: run directories, prediction and evaluation
(exact across DDP ranks)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..data.bands import BAND_SETS
from ..data.dataset import ShardDataset
from ..data.manifest import Manifest, Modality, verify_for_training
from ..data.recipe import dataset_names, load_recipe
from ..errors import AckdError, DatasetError
from ..predictions import Predictions
from ..provenance import write_json_atomic
from .engine import Runtime, TrainingError
from .feed import Split, as_split, split_outputs
from .metrics import multi_label_metrics, single_label_metrics

RUN_MARKER = ".ackd-run"  # in every run folder this tool made: only such a folder's files are the tool's to replace
RUN_FILES = ("log.csv", "result.json", "result.csv", "config.json", "tensorboard", "wandb", "mlruns", "cache")
CHECKPOINT_FILES = ("last.pt", "best.pt")


@contextmanager
def run_lock(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """One writer per run directory. The lock is an OS file lock beside the directory (released by
    the kernel when its holder dies, so a killed run leaves no stale lock); a second writer stops
    in one line naming the first (pid, host, start time), read from the owner file beside it."""
    if not enabled:
        yield
        return
    from filelock import FileLock, Timeout

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir.parent / f".{run_dir.name}.lock"), timeout=0)
    owner_file = run_dir.parent / f".{run_dir.name}.owner.json"
    try:
        lock.acquire()
    except Timeout:
        try:
            owner = json.loads(owner_file.read_text())
            who = f"pid {owner['pid']} on {owner['host']}, started {owner['started']}"
        except (OSError, ValueError, KeyError):
            who = "owner unknown"
        raise TrainingError(f"{run_dir}: another process is writing this run ({who}); wait for it to finish, or "
                            "give this one its own --out") from None
    try:
        write_json_atomic(owner_file, {"pid": os.getpid(), "host": socket.gethostname(),
                                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        yield
    finally:
        owner_file.unlink(missing_ok=True)
        lock.release()


def prepare_run_dir(run_dir: Path, *, resume: bool, force: bool) -> None:
    """Refuse to overwrite an earlier run unless asked, and a folder this tool did not make at all;
    --force clears only this tool's files (its checkpoints, not the checkpoints folder)."""
    owned = (run_dir / RUN_MARKER).is_file()
    if run_dir.is_dir() and not owned and any(run_dir.iterdir()):
        raise TrainingError(f"{run_dir}: not empty and not a run folder of ackd-bench (no {RUN_MARKER}); nothing was "
                            f"changed: give --out a new or empty folder (a run of an older ackd-bench: create an empty "
                            f"{run_dir / RUN_MARKER} to adopt it)")
    if force:
        for path in [*(run_dir / name for name in RUN_FILES), *(run_dir / "checkpoints" / n for n in CHECKPOINT_FILES)]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        if (run_dir / "checkpoints").is_dir() and not any((run_dir / "checkpoints").iterdir()):
            (run_dir / "checkpoints").rmdir()
    elif not resume:
        if (run_dir / "result.json").exists():
            raise TrainingError(f"{run_dir}: run already finished (result.json exists); pass --force to run it again")
        if (run_dir / "checkpoints" / "last.pt").exists():
            raise TrainingError(
                f"{run_dir}: holds a checkpoint of an unfinished run; pass --resume to continue it or --force to start over"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    if not owned:
        (run_dir / RUN_MARKER).write_text("ackd-bench run folder: the tool may replace its own files here\n")


def predict(model: nn.Module, data: ShardDataset | Split, rt: Runtime, batch_size: int,
            indices: np.ndarray | None = None, outputs: Sequence[str] = ("logits",)) -> dict[str, torch.Tensor]:
    """Outputs of `model` for `indices` (default: all) of a dataset or split, float32 on the CPU,
    in index order on every rank."""
    split = as_split(data, rt)
    return {k: v.cpu() for k, v in split_outputs(model, split, rt, batch_size, indices, outputs).items()}


def eval_batch_size(batch_size: int) -> int:
    """Evaluation holds no activations for backward: large batches cost little memory and save launches."""
    return max(batch_size, 1024)


def evaluate(model: nn.Module, data: ShardDataset | Split, rt: Runtime, batch_size: int,
             multilabel_f1: str = "samples", keep_predictions: bool = False) -> dict[str, Any]:
    """OA, F1 and the item count of `model` on a split; with `keep_predictions`, also its per-item
    `predictions` (predictions.py), as the reported metrics saw them."""
    split = as_split(data, rt)
    logits = split_outputs(model, split, rt, eval_batch_size(batch_size))["logits"].cpu().numpy()
    if split.dataset.multilabel:
        targets = split.all_multilabels()
        metrics = {**multi_label_metrics(targets, logits, multilabel_f1), "n": len(split)}
        kept = {"targets": targets}
    else:
        metrics = {**single_label_metrics(split.dataset.labels, logits), "n": len(split)}
        kept = {"labels": split.dataset.labels}
    if keep_predictions:
        metrics["predictions"] = Predictions.of(split.dataset.source_ids(), logits, **kept)
    return metrics


def device_name(rt: Runtime) -> str:
    if rt.cuda:
        name = torch.cuda.get_device_name(rt.device)
        synced = " SyncBatchNorm" if rt.sync_batchnorm else ""
        return f"{name} x{rt.ctx.world_size}{synced}" if rt.ctx.enabled else name
    return f"cpu x{rt.ctx.world_size}" if rt.ctx.enabled else "cpu"


@dataclass(frozen=True)
class BuiltDataset:
    """A built dataset's folder and its manifest, verified for training, and the MS bands a run
    feeds (`ms_bands`, in feeding order): what every run reads, through `split`."""

    root: Path
    manifest: Manifest
    ms_bands: tuple[str, ...]

    def modality(self, modality: str) -> Modality:
        """A side as a run sees it: the MS side's selected bands and their statistics."""
        spec = self.manifest.modalities[modality]
        return spec.selected(self.ms_bands) if modality == "ms" else spec

    def split(self, modality: str, split: str) -> ShardDataset:
        return ShardDataset(self.root, modality, split, manifest=self.manifest,
                            bands=self.ms_bands if modality == "ms" else None)


def select_ms_bands(manifest: Manifest, name: str) -> tuple[str, ...]:
    """The MS bands, in feeding order, that band set `name` (a profile's `options.ms_bands`) selects
    from a built dataset; a side that names no such set feeds every band it stores.

    A build whose recipe named no band sets (S2S-EU version 1, toy, ...) falls back on the sets of the
    dataset's current recipe: all the bands of the set named must be stored, else the build is older
    than the selection and must be rebuilt."""
    if name not in BAND_SETS:
        raise AckdError(f"options.ms_bands is {name!r}: expected one of {', '.join(BAND_SETS)}")
    ms = manifest.modalities["ms"]
    if ms.band_sets is not None:
        return ms.band_sets.get(name, ms.bands)
    current = load_recipe(manifest.dataset) if manifest.dataset in dataset_names() else None
    wanted = current.modalities["ms"].band_sets.get(name) if current is not None else None
    if wanted is None:
        return ms.bands
    missing = [b for b in wanted if b not in ms.bands]
    if missing:
        raise DatasetError(
            f"built from recipe '{manifest.dataset}' version {str(manifest.recipe.get('version', '?'))[:16]}, which "
            f"stores MS bands {' '.join(ms.bands)}; options.ms_bands {name} selects {' '.join(wanted)} and this build "
            f"lacks {' '.join(missing)}: rebuild it with `ackd-bench build {manifest.dataset} --force` (recipe version "
            f"{current.version} stores them)")
    return wanted


def load_dataset(dataset_dir: str | Path, ms_bands: str | Sequence[str] = "recipe") -> BuiltDataset:
    """A built dataset for a run feeding `ms_bands`: a band set's name (a profile's `options.ms_bands`)
    or the band names themselves (a checkpoint's)."""
    manifest = verify_for_training(dataset_dir)
    try:
        bands = select_ms_bands(manifest, ms_bands) if isinstance(ms_bands, str) else tuple(ms_bands)
        manifest.modalities["ms"].selected(bands)  # every band stored
    except AckdError as exc:
        raise DatasetError(f"{dataset_dir}: {exc}") from None
    return BuiltDataset(Path(dataset_dir), manifest, bands)
