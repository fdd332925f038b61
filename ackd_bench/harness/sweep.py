"""`ackd-bench sweep`: run a grid through a launcher, skipping finished runs, recording failures.

Stage 0 (teachers, matchers) finishes before stage 1 (students), so every student finds its
shared teacher, matcher and teacher cache ready. A run that fails is recorded in the sweep's
ledger and the sweep goes on; running the same sweep again retries only what is not done.
Finished runs are recognised by their config hash (the run directory's result.json), also when
they were produced outside the sweep. On Slurm, jobs are array jobs that requeue themselves on
preemption and resume from their last checkpoint.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import AckdError
from ..provenance import write_json_atomic
from .grid import RunRequest

LAUNCHERS = ("local", "submitit-local", "slurm")


@dataclass
class SweepConfig:
    profile: str = "paper"
    runs_root: str = "runs"
    student_overrides: dict[str, Any] = field(default_factory=dict)
    teacher_overrides: dict[str, Any] = field(default_factory=dict)
    matcher_overrides: dict[str, Any] = field(default_factory=dict)
    matcher_arch: str | None = None
    device: str = "auto"
    workers: int | None = None
    threads: int | None = None  # torch CPU threads per run (None: torch's default)


def run_request(request: RunRequest, config: SweepConfig, resume: str = "auto") -> dict[str, Any]:
    """Execute one request (reusing finished runs); returns its result record and run directory."""
    from ..train.api import RunOptions, train_classifier, train_matcher, train_student
    from .evaluate import ensure_matcher, ensure_teacher

    options = RunOptions(runs_root=Path(config.runs_root), device=config.device, workers=config.workers,
                         progress=False, reuse_finished=True, resume=resume)
    if request.kind == "teacher":
        return train_classifier(request.dataset, request.teacher, role="teacher", profile=config.profile,
                                seed=request.seed, overrides=config.teacher_overrides, options=options)
    if request.kind == "matcher":
        return train_matcher(request.dataset, config.matcher_arch, profile=config.profile, seed=request.seed,
                             overrides=config.matcher_overrides, options=options)
    teacher = matcher = None
    if request.method != "none":
        teacher = ensure_teacher(request.dataset, request.teacher, config.profile, request.seed,
                                 config.teacher_overrides, options)
    if request.method.startswith("sembridge") and "ssm" not in request.ablation.split(","):
        matcher = ensure_matcher(request.dataset, config.profile, request.seed, config.matcher_overrides, options,
                                 config.matcher_arch)
    return train_student(request.dataset, request.student, method=request.method, teacher=teacher, matcher=matcher,
                         profile=config.profile, seed=request.seed, overrides=config.student_overrides,
                         ablate=request.ablation or None, options=options)


def guarded(request: RunRequest, config: SweepConfig) -> dict[str, Any]:
    """Never raises: a failure becomes a ledger entry with its error."""
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    try:
        result = run_request(request, config)
        return {"status": "done", "run_dir": result["run_dir"]}
    except Exception as exc:  # noqa: BLE001 - a sweep records every failure and goes on
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return {"status": "failed", "error": last}


class SlurmJob:
    """submitit callable that asks to be requeued when preempted; the rerun resumes its checkpoint."""

    def __call__(self, request: RunRequest, config: SweepConfig) -> dict[str, Any]:
        return guarded(request, config)

    def checkpoint(self, request: RunRequest, config: SweepConfig):
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmJob(), request, config)


class Ledger:
    """`<runs_root>/sweeps/<name>.json`: the status of every request of a sweep."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}

    def pending(self, requests: list[RunRequest]) -> list[RunRequest]:
        return [r for r in requests if self.entries.get(r.key, {}).get("status") != "done"]

    def record(self, request: RunRequest, outcome: dict[str, Any]) -> None:
        self.entries[request.key] = {**asdict(request), **outcome}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, self.entries)


def run_sweep(requests: list[RunRequest], config: SweepConfig, *, launcher: str = "local", name: str = "sweep",
              slurm: dict[str, Any] | None = None, progress: bool = True) -> Ledger:
    if launcher not in LAUNCHERS:
        raise AckdError(f"--launcher {launcher}: expected one of {', '.join(LAUNCHERS)}")
    ledger = Ledger(Path(config.runs_root) / "sweeps" / f"{name}.json")
    for stage in sorted({r.stage for r in requests}):
        todo = ledger.pending([r for r in requests if r.stage == stage])
        if not todo:
            continue
        if launcher == "local":
            for request in tqdm(todo, desc=f"sweep stage {stage}", unit="run", disable=not progress):
                ledger.record(request, guarded(request, config))
            continue
        import submitit

        if launcher == "submitit-local" and config.threads is None:
            # local jobs run side by side: one thread each avoids oversubscribing the cores
            config = replace(config, threads=1)
        folder = Path(config.runs_root) / "sweeps" / f"{name}-submitit"
        executor = submitit.AutoExecutor(folder=folder, cluster="local" if launcher == "submitit-local" else "slurm")
        executor.update_parameters(**(slurm or {}))
        jobs = executor.map_array(SlurmJob(), todo, [config] * len(todo))
        for request, job in tqdm(list(zip(todo, jobs)), desc=f"sweep stage {stage}", unit="run", disable=not progress):
            try:
                outcome = job.result()
            except Exception as exc:  # noqa: BLE001 - the job itself died (killed, out of memory, ...)
                outcome = {"status": "failed", "error": str(exc).strip().splitlines()[-1][:500]}
            ledger.record(request, outcome)
    return ledger
