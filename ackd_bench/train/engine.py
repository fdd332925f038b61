"""The one training loop behind teacher, matcher and student runs.

A task supplies a `TrainModule` whose forward returns named loss terms (so DDP sees one module),
the epoch's batches (already on the device), a `prepare` step that turns a batch into the
module's inputs, and a validation score. The engine owns everything else: device and precision,
DDP, the optimiser and schedule, finite-loss checks, checkpoints with RNG states, exact resume,
logs and model selection.

Nothing inside the step loop waits for the device: the loss terms are summed on the device, and
the finite-loss check reads one flag every FINITE_CHECK_STEPS steps and at the end of the epoch.
`last.pt` (weights, optimiser, RNG, task state) is written every `checkpoint_every` seconds, at the
end, and on a signal: SIGUSR1 saves after the epoch in progress and training goes on; SIGUSR2
(Slurm's preemption notice, as submitit asks for it) and SIGTERM stop the run with its state saved.
A stop finishes the epoch in progress when it will end within the grace period the signal leaves
(STOP_GRACE_S), otherwise it drops that epoch at once and saves the last completed one, kept in host
memory for that purpose. The best weights are kept on the device and written as `best.pt` (weights
only) just before `last.pt`, so the two always agree.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import AckdError
from ..provenance import atomic_path
from . import standin
from .checkpoint import (CheckpointError, load_checkpoint, rank_rng_state, rng_state, save_checkpoint,
                         set_rng_state)
from .device import place, place_module, uses_channels_last
from .distributed import DistContext, all_ranks_max, barrier, gather_objects
from .loggers import MetricLoggers

FINITE_CHECK_STEPS = 50  # steps between reads of the non-finite flag (each read waits for the device)


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

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise AckdError(f"{name} {value!r} (the profile's, or --{name.replace('_', '-')}): expected a positive integer")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise AckdError(f"{name} {value!r} (the profile's, or --{name.replace('_', '-')}): expected a finite number"
                                + (" above 0" if name == "lr" else " >= 0"))

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
    resident: str = "auto"  # splits in device memory: auto (when they fit), on, off
    checkpoint_every: float = 0.0  # seconds between last.pt writes; 0: every epoch
    compile: bool = False
    precision: str = "fp32"  # bf16 | fp16 | fp32, resolved (resolve_precision)
    loggers: tuple[str, ...] = ("csv",)  # train/loggers.py
    sync_batchnorm: bool = False  # DDP: BatchNorm statistics over the global batch, as one GPU computes them

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """fp16's loss scaling (a no-op for bf16 and fp32, whose range needs none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def layout(self, images: torch.Tensor) -> torch.Tensor:
        """channels-last where the modules are (device.uses_channels_last)."""
        if uses_channels_last(self.device) and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def place(self, tensor: torch.Tensor) -> torch.Tensor:
        return place(tensor, self.device, non_blocking=True)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        return self.layout(self.place(images))

    def place_module(self, module: nn.Module) -> nn.Module:
        return place_module(module, self.device)


PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def resolve_precision(requested: str, device: torch.device, profile: str = "auto") -> str:
    """`auto`: bf16 on a GPU that computes it natively (Ampere and later), fp16 with loss scaling on
    one that does not (V100, T4), fp32 on the CPU. An explicit choice is kept. A profile whose
    options.forward_precision is fp32 (the reference code's) runs in fp32 and refuses another."""
    if requested not in PRECISIONS:
        raise AckdError(f"--precision {requested}: expected one of {', '.join(PRECISIONS)}")
    if profile == "fp32":
        if requested not in ("auto", "fp32"):
            raise AckdError(f"--precision {requested}: the profile runs in fp32 (options.forward_precision: fp32, as "
                            "the reference code); drop --precision or --set options.forward_precision=auto")
        return "fp32"
    if requested != "auto":
        return requested
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


LOSS_PRECISIONS = ("fp32", "autocast")


def loss_precision(mode: str, device_type: str):
    """Where loss terms are computed: in float32 even inside an autocast region ("fp32": distances,
    Gram matrices and tempered softmaxes lose too much in bf16), or in whatever the region gives."""
    if mode not in LOSS_PRECISIONS:
        raise ValueError(f"loss precision {mode!r}: expected one of {', '.join(LOSS_PRECISIONS)}")
    return torch.autocast(device_type, enabled=False) if mode == "fp32" else nullcontext()


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    # deterministic mode would also NaN-fill every torch.empty: a cost on each allocation that buys
    # nothing here (no kernel of ours reads memory it has not written)
    torch.utils.deterministic.fill_uninitialized_memory = False


class Task(ABC):
    """One kind of run. `module` holds every trainable parameter and returns loss terms."""

    module: nn.Module

    @abstractmethod
    def train_batches(self, epoch: int) -> Iterable[Any]:
        """The epoch's batches, already on the device (a `feed.TrainFeed`)."""

    @abstractmethod
    def prepare(self, batch: Any, epoch: int, step: int) -> dict[str, Any]:
        """The module's keyword inputs for a batch; must not wait for the device."""

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

    def close(self) -> None:
        """Release what the task holds across epochs: its feed's persistent loader workers."""
        feed = getattr(self, "feed", None)
        if feed is not None:
            feed.close()


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
    """Per-epoch rows to log.csv, and to the other loggers the run chose (train/loggers.py)."""

    def __init__(self, run_dir: Path, enabled: bool, loggers: tuple[str, ...] = ("csv",),
                 config: dict[str, Any] | None = None):
        self.path = run_dir / "log.csv"
        self.enabled = enabled
        self.others = MetricLoggers(loggers, run_dir, run_dir.name, config or {}) if enabled else None

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
        self.others.log(row)

    def close(self, status: str = "finished") -> None:
        if self.others is not None:
            self.others.close(status)

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


class Preempted(TrainingError):
    """SIGTERM or SIGUSR2 arrived: the run saved its state and stopped."""

    def __init__(self, message: str, signal_name: str):
        super().__init__(message)
        self.signal_name = signal_name


# Seconds between a stop signal and the SIGKILL that follows it: SIGUSR2 is sent that long before
# the end (the sweep's --signal=USR2@90); SIGTERM is followed by SIGKILL after Slurm's KillWait, 30 s
# by default. The sweep's Slurm jobs are told the cluster's values through the environment.
GRACE_ENV, TERM_GRACE_ENV = "ACKD_PREEMPT_GRACE_S", "ACKD_TERM_GRACE_S"
STOP_GRACE_S = {"SIGUSR2": (GRACE_ENV, 90.0), "SIGTERM": (TERM_GRACE_ENV, 30.0)}
GRACE_SHARE = 0.75  # of the grace period spent training on; the rest is for validating and saving


def stop_grace_s(name: str) -> float:
    variable, default = STOP_GRACE_S[name]
    try:
        return max(0.0, float(os.environ.get(variable) or default))
    except ValueError:  # read in a signal handler: a bad value must not stop the save
        return default


class SaveTriggers:
    """When last.pt is due: every `every` seconds, at the end, and after a signal; and whether a stop
    signal leaves time to finish the epoch in progress.

    Handlers are installed only for the duration of `fit`, and only from the main thread (Python
    delivers signals there); a handler just records the signal, the loop acts on it.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")
    STOPS = ("SIGTERM", "SIGUSR2")

    def __init__(self, every: float):
        self.every, self.last = float(every), time.monotonic()
        self.arrived: list[int] = []  # signals not yet acted on, in arrival order (appended by the handler)
        self.stop_signal: str | None = None  # the first stop signal's name, for a stop in mid-epoch
        self.stop_deadline: float | None = None  # monotonic time by which training must have stopped
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "SaveTriggers":
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name, None)
                if number is not None:
                    self._previous[number] = signal.signal(number, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _record(self, number: int, frame) -> None:
        del frame
        name = signal.Signals(number).name
        if name in self.STOPS:
            deadline = time.monotonic() + stop_grace_s(name) * GRACE_SHARE
            self.stop_deadline = deadline if self.stop_deadline is None else min(self.stop_deadline, deadline)
            self.stop_signal = self.stop_signal or name
        self.arrived.append(number)

    def take(self) -> int:
        """The signal to act on at an epoch's end (0: none; a stop before a save), taking only the
        signals it read: one that arrives while the epoch ends is acted on at the next epoch's end,
        never lost. (A handler runs between bytecodes; the slice deletion is one.)"""
        count = len(self.arrived)
        taken = self.arrived[:count]
        del self.arrived[:count]
        stops = [n for n in taken if signal.Signals(n).name in self.STOPS]
        return (stops or taken or [0])[0]

    def stopping(self) -> bool:
        return self.stop_deadline is not None

    def out_of_time(self, epoch_started: float, epoch_seconds: float | None) -> bool:
        """After a stop signal: True when the epoch in progress cannot end before the deadline (by
        the previous epoch's length, or because the deadline passed)."""
        if self.stop_deadline is None:
            return False
        now = time.monotonic()
        expected_end = epoch_started + epoch_seconds if epoch_seconds is not None else now
        return max(now, expected_end) > self.stop_deadline

    def due(self, final: bool) -> bool:
        return final or self.every <= 0 or time.monotonic() - self.last >= self.every

    def saved(self) -> None:
        self.last = time.monotonic()


def ignore_handled_signals(worker_id: int) -> None:
    """DataLoader worker_init_fn: the signals the training process handles are its to act on (Slurm
    sends them to every process of a job); a worker that died of one would fail the epoch."""
    del worker_id
    for name in SaveTriggers.SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_IGN)


def snapshot(value: Any) -> Any:
    """A copy of a checkpoint payload detached from training, each tensor where it lives: an epoch
    that does not save keeps its state on the device (a device-to-device copy), and only a write
    (torch.save) moves it to the host. A host copy every epoch cost about 260 MB of transfers for
    ResNet34 with Adam, 5-10% of an S2S-EU student epoch on a GPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(v) for v in value)
    return value


class TermSums:
    """Per-epoch sums of the loss terms, kept on the device, and the first non-finite loss seen.

    Every step adds one stacked vector; nothing is read back until `check` (every
    FINITE_CHECK_STEPS steps and at the epoch's end) or `means` (at the epoch's end).
    """

    def __init__(self, ctx: DistContext | None = None, device: torch.device | None = None):
        self.ctx, self.device = ctx or DistContext(), device
        self.names: tuple[str, ...] | None = None
        self.total: torch.Tensor | None = None
        self.first_bad_step: torch.Tensor | None = None
        self.bad_values: torch.Tensor | None = None
        self.steps = 0

    def add(self, step: int, terms: dict[str, torch.Tensor]) -> None:
        names = tuple(terms)
        values = torch.stack([terms[k].detach().float().reshape(()) for k in names])
        if self.names is None:
            self.names, self.total = names, torch.zeros_like(values)
            self.first_bad_step = torch.full((), -1, dtype=torch.long, device=values.device)
            self.bad_values = torch.zeros_like(values)
        elif names != self.names:
            raise TrainingError(f"loss terms changed within an epoch: {self.names} then {names}")
        self.total += values
        first = ~torch.isfinite(values[names.index("loss")]) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(first, step, self.first_bad_step)
        self.bad_values = torch.where(first, values, self.bad_values)
        self.steps += 1

    def check(self, epoch: int, last_good: str) -> None:
        """Raise on a non-finite loss. Under DDP the ranks agree first (every rank checks at the same
        steps), so all of them stop together, each in one line, rather than those that saw none
        waiting in the next collective until NCCL's watchdog ends them."""
        here = self.first_bad_step is not None and int(self.first_bad_step) >= 0
        if not all_ranks_max(int(here), self.ctx, self.device):
            return
        if not here:
            raise TrainingError(f"non-finite loss on another rank at epoch {epoch + 1}; this rank stops with it; "
                                f"last good checkpoint: {last_good}")
        values = ", ".join(f"{k}={v:.4g}" for k, v in zip(self.names, self.bad_values.tolist()))
        raise TrainingError(f"non-finite loss at epoch {epoch + 1}, step {int(self.first_bad_step) + 1} ({values}); "
                            f"last good checkpoint: {last_good}")

    def means(self) -> dict[str, float]:
        if self.names is None:
            return {}
        return dict(zip(self.names, (self.total / max(self.steps, 1)).tolist()))


def compile_backbones(module: nn.Module) -> None:
    """torch.compile every backbone in place (state-dict keys unchanged, so checkpoints stay portable)."""
    from ..models import Backbone

    # Dynamo guards on each module instance: several runs in one process (eval, demo, in-process
    # sweeps) would pass its recompile limit and silently fall back to eager; each run starts afresh
    torch._dynamo.reset()
    for child in module.modules():
        if isinstance(child, Backbone):
            child.compile()


def for_ranks(module: nn.Module, sync_batchnorm: bool) -> nn.Module:
    """The module a DDP run wraps: with `sync_batchnorm`, every BatchNorm computes its statistics over
    all ranks' batches (the single-GPU protocol's global batch) instead of each rank's share."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(module) if sync_batchnorm else module


class Engine:
    def __init__(self, task: Task, cfg: OptimConfig, runtime: Runtime, run_dir: Path, meta: dict[str, Any]):
        self.task, self.cfg, self.rt, self.run_dir, self.meta = task, cfg, runtime, Path(run_dir), meta
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.module = runtime.place_module(task.module)
        if runtime.compile:
            compile_backbones(self.module)
        self.wrapped: nn.Module = self.module
        if runtime.ctx.enabled:
            self.module = for_ranks(self.module, runtime.sync_batchnorm)
            device_ids = [runtime.device.index] if runtime.cuda else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.module, device_ids=device_ids)
        params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(params, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.log = EpochLog(self.run_dir, runtime.ctx.is_main, runtime.loggers, meta.get("config"))
        self.scaler = runtime.grad_scaler()
        self.best_state: dict[str, torch.Tensor] | None = None  # on the device until written
        self.best_written = True

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
            "scaler": self.scaler.state_dict(),
            **self._rng(),
            "task_state": self.task.state(),
            "best_score": best_score,
            "best_epoch": best_epoch,
            "best_val": best_val,
        }

    def _rng(self) -> dict[str, Any]:
        """The generators' states: this rank's, and under DDP every rank's (`rng_ranks`), gathered
        for the main rank to write, so that each rank resumes with its own."""
        own = rng_state(self.rt.device)
        if not self.rt.ctx.enabled:
            return {"rng": own}
        return {"rng": own, "rng_ranks": gather_objects(own, self.rt.ctx)}

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
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.task.load_state(state["task_state"])
        set_rng_state(rank_rng_state(state, self.rt.ctx.rank, self.rt.ctx.world_size), self.rt.device)
        if self.best_path.exists():
            self.best_state = load_checkpoint(self.best_path)["module"]
        return state["epoch"] + 1, state["best_score"], state["best_epoch"], state["best_val"]

    def _save(self, epoch: int, best_score: float, best_epoch: int, best_val: dict) -> None:
        self._write(self._payload(epoch, best_score, best_epoch, best_val))

    def _write(self, payload: dict[str, Any]) -> None:
        """best.pt (if it changed) before last.pt: a kill in between leaves a best.pt from an epoch
        that the resumed run replays exactly, so it is chosen again."""
        if not self.rt.ctx.is_main:
            return
        if not self.best_written and self.best_state is not None:
            save_checkpoint(self.best_path, {**self.meta, "epoch": payload["best_epoch"], "module": self.best_state,
                                             "val": payload["best_val"]})
            self.best_written = True
        save_checkpoint(self.last_path, payload)

    def _stop_at_once(self, epoch: int, name: str, unsaved: dict[str, Any] | None) -> Preempted:
        """A stop signal left too little time to finish `epoch`: drop it, save the last completed one."""
        if unsaved is not None:
            self._write(unsaved)
        held = f"{self.last_path} holds epoch {epoch}" if epoch > 0 else "no epoch was completed"
        return Preempted(f"stopped by {name} during epoch {epoch + 1}/{self.cfg.epochs}, too late to finish it "
                         f"within the grace period; {held}: continue with --resume", name)

    def _last_good(self) -> str:
        return str(self.last_path) if self.last_path.exists() else "none"

    def fit(self, resume: bool = False) -> FitResult:
        """Train, select on val, checkpoint; the loggers' runs end on every exit, marked finished,
        stopped (a preemption) or failed (an error, a non-finite loss, Ctrl-C)."""
        try:
            fitted = self._fit(resume)
        except Preempted:
            self.log.close("stopped")
            raise
        except BaseException:
            self.log.close("failed")
            raise
        finally:
            self.task.close()
        self.log.close("finished")
        return fitted

    def _fit(self, resume: bool) -> FitResult:
        start, best_score, best_epoch, best_val = 0, -math.inf, -1, {}
        if resume:
            if not self.last_path.exists():
                raise CheckpointError(f"{self.last_path}: --resume given but the run has no checkpoint")
            start, best_score, best_epoch, best_val = self._restore()
            self.log.truncate_after(start)
        if self.rt.ctx.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        # mid-epoch stops are for one process: DDP ranks must leave an epoch together, at its end
        may_stop_at_once = not self.rt.ctx.enabled
        unsaved: dict[str, Any] | None = None  # the last completed epoch when last.pt is older
        epoch_seconds: float | None = None  # the previous epoch's length, to foresee the current one's
        with SaveTriggers(self.rt.checkpoint_every) as triggers:
            for epoch in range(start, self.cfg.epochs):
                started, epoch_started = time.time(), time.monotonic()
                self.task.on_epoch_start(epoch)
                self.module.train()
                sums = TermSums(self.rt.ctx, self.rt.device)
                loop_started = time.time()
                batches = tqdm(
                    self.task.train_batches(epoch), desc=f"epoch {epoch + 1}/{self.cfg.epochs}", unit="batch",
                    leave=False, disable=not (self.rt.progress and self.rt.ctx.is_main),
                )
                with standin.step_loop(self.rt.device):
                    for step, batch in enumerate(batches):
                        if may_stop_at_once and triggers.out_of_time(epoch_started, epoch_seconds):
                            raise self._stop_at_once(epoch, triggers.stop_signal, unsaved)
                        inputs = self.task.prepare(batch, epoch, step)
                        with self.rt.autocast():
                            terms = self.wrapped(**inputs)
                        sums.add(step, terms)
                        if (step + 1) % FINITE_CHECK_STEPS == 0:
                            with standin.allowed_sync(self.rt.device):
                                sums.check(epoch, self._last_good())
                        self.optimizer.zero_grad(set_to_none=True)
                        self.scaler.scale(terms["loss"]).backward()
                        self.scaler.step(self.optimizer)  # fp16: skipped when the scaled gradients overflowed
                        self.scaler.update()
                        standin.count_step(self.rt.device)
                sums.check(epoch, self._last_good())  # also waits for the device: the steps are done
                train_seconds = time.time() - loop_started
                lr = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step()
                val = self.task.validate()
                if val["score"] > best_score:
                    best_score, best_epoch, best_val = val["score"], epoch, val
                    self.best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
                    self.best_written = False
                if self.rt.ctx.is_main:
                    # the row before the checkpoint: a run killed in between resumes from the previous
                    # checkpoint and drops this row, so the log never misses an epoch the weights contain
                    row = {"epoch": epoch, "lr": lr, **{f"train_{k}": v for k, v in sums.means().items()},
                           **{f"val_{k}": v for k, v in val.items() if k != "score" and v is not None},
                           "steps": sums.steps, "train_seconds": round(train_seconds, 3),
                           "seconds": round(time.time() - started, 3)}
                    self.log.append(row)
                # the largest signal number wins across ranks: SIGTERM (15), SIGUSR2 (12), SIGUSR1 (10)
                received = all_ranks_max(triggers.take(), self.rt.ctx, self.rt.device)
                # agreed too: a save gathers every rank's generators, so all ranks save or none
                due = all_ranks_max(int(triggers.due(final=epoch == self.cfg.epochs - 1)), self.rt.ctx, self.rt.device)
                if due or received:
                    self._save(epoch, best_score, best_epoch, best_val)
                    triggers.saved()
                    unsaved = None
                elif may_stop_at_once and self.rt.ctx.is_main:
                    unsaved = snapshot(self._payload(epoch, best_score, best_epoch, best_val))
                barrier(self.rt.ctx)
                name = signal.Signals(received).name if received else None
                if name in SaveTriggers.STOPS:
                    raise Preempted(f"stopped by {name} after epoch {epoch + 1}/{self.cfg.epochs}; "
                                    f"{self.last_path} holds it: continue with --resume", name)
                epoch_seconds = time.monotonic() - epoch_started
        return FitResult(best_epoch, best_val, self.cfg.epochs - start)

    def load_best(self) -> dict[str, Any]:
        state = load_checkpoint(self.best_path)
        self.module.load_state_dict(state["module"])
        return state
