"""The one training loop behind teacher, matcher and student runs.

A task supplies a `TrainModule` whose forward returns named loss terms (so DDP sees one module),
a per-epoch DataLoader, a `prepare` step that moves a batch to the device, and a validation
score. The engine owns everything else: device and precision, DDP, the optimiser and schedule,
finite-loss checks, per-epoch checkpoints with RNG states, exact resume, logs and model selection.
"""

from __future__ import annotations

import csv
import math
import os
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import AckdError
from ..provenance import atomic_path
from .checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import DistContext, barrier


class TrainingError(AckdError):
    """Training cannot go on (a non-finite loss, a run directory in the way)."""


@dataclass(frozen=True)
class OptimConfig:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    optimizer: str = "adam"
    scheduler: str = "none"  # "none" or "cosine" (per epoch)

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> "OptimConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in spec.items() if k in known})


@dataclass
class Runtime:
    """Where and how a run executes."""

    device: torch.device
    ctx: DistContext = field(default_factory=DistContext)
    workers: int = 0
    progress: bool = True

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else nullcontext()

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.cuda and images.dim() == 4 else images


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AckdError(f"--device {name}: CUDA is not available on this machine")
    if name.startswith("cuda") and ":" not in name and "LOCAL_RANK" in os.environ:
        name = f"cuda:{os.environ['LOCAL_RANK']}"
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


class Task(ABC):
    """One kind of run. `module` holds every trainable parameter and returns loss terms."""

    module: nn.Module

    @abstractmethod
    def train_batches(self, epoch: int) -> Iterable[Any]: ...

    @abstractmethod
    def prepare(self, batch: Any, epoch: int, step: int) -> dict[str, Any]: ...

    @abstractmethod
    def validate(self) -> dict[str, float | None]:
        """Validation metrics; the key 'score' (higher is better) selects the checkpoint."""

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for work between epochs (e.g. re-matching teachers)."""

    def state(self) -> dict[str, Any]:
        """Task state that is not a parameter (e.g. a match table), saved with each checkpoint."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        del state


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    raise AckdError(f"profile: unknown optimizer '{cfg.optimizer}': expected adam, adamw or sgd")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig):
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.scheduler == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _epoch: 1.0)
    raise AckdError(f"profile: unknown scheduler '{cfg.scheduler}': expected none or cosine")


class EpochLog:
    """Per-epoch rows to log.csv, and to TensorBoard when it is installed."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.path = run_dir / "log.csv"
        self.enabled = enabled
        self.tensorboard = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self.tensorboard = None

    def truncate_after(self, epoch: int) -> None:
        """On resume, drop rows of epochs that the restored checkpoint does not contain."""
        if not self.enabled or not self.path.exists():
            return
        with open(self.path, newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) < epoch]
        self._write(rows, rewrite=True)

    def append(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._write([row], rewrite=False)
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, row["epoch"])
            self.tensorboard.flush()

    def _write(self, rows: list[dict[str, Any]], rewrite: bool) -> None:
        existing: list[dict[str, Any]] = []
        if not rewrite and self.path.exists():
            with open(self.path, newline="") as handle:
                existing = list(csv.DictReader(handle))
        rows = existing + rows
        columns = list(dict.fromkeys(k for row in rows for k in row))
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


@dataclass
class FitResult:
    best_epoch: int
    best_val: dict[str, float | None]
    epochs_run: int


class Engine:
    def __init__(self, task: Task, cfg: OptimConfig, runtime: Runtime, run_dir: Path, meta: dict[str, Any]):
        self.task, self.cfg, self.rt, self.run_dir, self.meta = task, cfg, runtime, Path(run_dir), meta
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.module = task.module.to(runtime.device)
        if runtime.cuda:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.wrapped: nn.Module = self.module
        if runtime.ctx.enabled:
            device_ids = [runtime.device.index] if runtime.cuda else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.module, device_ids=device_ids)
        params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(params, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.log = EpochLog(self.run_dir, runtime.ctx.is_main)

    @property
    def last_path(self) -> Path:
        return self.ckpt_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.ckpt_dir / "best.pt"

    def _payload(self, epoch: int, best_score: float, best_epoch: int, best_val: dict) -> dict[str, Any]:
        return {
            **self.meta,
            "epoch": epoch,
            "module": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "task_state": self.task.state(),
            "best_score": best_score,
            "best_epoch": best_epoch,
            "best_val": best_val,
        }

    def _restore(self) -> tuple[int, float, int, dict]:
        state = load_checkpoint(self.last_path)
        for key in ("dataset_version", "config_hash"):
            if state.get(key) != self.meta.get(key):
                what = "dataset version" if key == "dataset_version" else "configuration"
                raise CheckpointError(
                    f"{self.last_path}: made with {what} {str(state.get(key))[:16]}, this run has "
                    f"{str(self.meta.get(key))[:16]}; start a new run directory instead of --resume"
                )
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.task.load_state(state["task_state"])
        set_rng_state(state["rng"])
        return state["epoch"] + 1, state["best_score"], state["best_epoch"], state["best_val"]

    def fit(self, resume: bool = False) -> FitResult:
        start, best_score, best_epoch, best_val = 0, -math.inf, -1, {}
        if resume:
            if not self.last_path.exists():
                raise CheckpointError(f"{self.last_path}: --resume given but the run has no checkpoint")
            start, best_score, best_epoch, best_val = self._restore()
            self.log.truncate_after(start)
        if self.rt.ctx.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        for epoch in range(start, self.cfg.epochs):
            started = time.time()
            self.task.on_epoch_start(epoch)
            self.module.train()
            sums: dict[str, float] = defaultdict(float)
            steps = 0
            batches = tqdm(
                self.task.train_batches(epoch), desc=f"epoch {epoch + 1}/{self.cfg.epochs}", unit="batch",
                leave=False, disable=not (self.rt.progress and self.rt.ctx.is_main),
            )
            for step, batch in enumerate(batches):
                inputs = self.task.prepare(batch, epoch, step)
                with self.rt.autocast():
                    terms = self.wrapped(**inputs)
                loss = terms["loss"]
                if not torch.isfinite(loss.detach()).item():
                    values = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
                    raise TrainingError(
                        f"non-finite loss at epoch {epoch + 1}, step {step + 1} ({values}); "
                        f"last good checkpoint: {self.last_path if epoch > start or resume else 'none'}"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                for key, value in terms.items():
                    sums[key] += float(value.detach())
                steps += 1
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            val = self.task.validate()
            if val["score"] > best_score:
                best_score, best_epoch, best_val = val["score"], epoch, val
                if self.rt.ctx.is_main:
                    save_checkpoint(self.best_path, {**self.meta, "epoch": epoch, "module": self.module.state_dict(),
                                                     "val": val})
            if self.rt.ctx.is_main:
                # the row before the checkpoint: a run killed in between resumes from the previous
                # checkpoint and drops this row, so the log never misses an epoch the weights contain
                row = {"epoch": epoch, "lr": lr, **{f"train_{k}": v / max(steps, 1) for k, v in sums.items()},
                       **{f"val_{k}": v for k, v in val.items() if k != "score" and v is not None},
                       "seconds": round(time.time() - started, 3)}
                self.log.append(row)
                save_checkpoint(self.last_path, self._payload(epoch, best_score, best_epoch, best_val))
            barrier(self.rt.ctx)
        return FitResult(best_epoch, best_val, self.cfg.epochs - start)

    def load_best(self) -> dict[str, Any]:
        state = load_checkpoint(self.best_path)
        self.module.load_state_dict(state["module"])
        return state
