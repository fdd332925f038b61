"""`ackd-bench sweep`: run a grid through a launcher, skipping finished runs, recording failures.

Stage 0 (teachers, matchers) finishes before stage 1 (students), so every student finds its
shared teacher, matcher and teacher cache ready. A run that fails is recorded in the sweep's
ledger and the sweep goes on; running the same sweep again retries only what is not done.
Finished runs are recognised by their config hash (the run directory's result.json), also when
they were produced outside the sweep. On Slurm (harness/slurm.py), jobs are array jobs that save
and requeue themselves on preemption (SIGUSR2) and resume from their last checkpoint.

With `runs_per_gpu` K > 1, K runs share one device at once, each in its own spawned process (its
own CUDA context, seed, run directory and result): the local launcher keeps K in flight, the
submitit launchers submit one array task per group of K. K is lowered when K runs would not fit
in the device's free memory.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tqdm.auto import tqdm

from ..errors import AckdError
from ..untrusted import plain_name
from .grid import GridRun
from .plan import LAUNCHERS, RunPlan, write_plan
from .runner import Ledger, check_runs_per_gpu, fit_runs_per_gpu, guarded, run_concurrently
from .slurm import LocalExecutorSettings, SlurmSettings, submit_local_stage, submit_stage


def run_sweep(requests: list[GridRun], config: RunPlan, *, launcher: str = "local", name: str = "sweep",
              slurm: dict[str, Any] | SlurmSettings | LocalExecutorSettings | None = None,
              progress: bool = True) -> Ledger:
    """Run `requests` stage by stage through `launcher`, with `slurm` its settings (a mapping, or the
    launcher's own settings type), recording every outcome in the sweep's ledger and its plan."""
    if launcher not in LAUNCHERS:
        raise AckdError(f"--launcher {launcher}: expected one of {', '.join(LAUNCHERS)}")
    check_runs_per_gpu(config.runs_per_gpu)
    settings = launcher_settings(launcher, slurm)
    ledger = Ledger(config.runs_root / "sweeps" / f"{plain_name(name, '--name')}.json")
    write_plan(requests, config, launcher, name, asdict(settings) if settings is not None else {})
    slots = None  # runs at once on the local device, checked against its memory once
    for stage in sorted({r.stage for r in requests}):
        todo = ledger.pending([r for r in requests if r.stage == stage])
        if not todo:
            continue
        desc = f"sweep stage {stage}"
        if launcher == "local" and config.runs_per_gpu == 1:
            for request in tqdm(todo, desc=desc, unit="run", disable=not progress):
                ledger.record(request, guarded(request, config))
        elif launcher == "local":
            if slots is None:
                slots = fit_runs_per_gpu(config.runs_per_gpu, config.options.device, [r.dataset for r in requests])
            with tqdm(total=len(todo), desc=desc, unit="run", disable=not progress) as bar:
                def record(request: GridRun, outcome: dict[str, Any]) -> None:
                    ledger.record(request, outcome)  # as each finishes: an interrupted sweep keeps it
                    bar.update()

                run_concurrently(todo, config, slots, on_finish=record)
        elif launcher == "slurm":
            with tqdm(total=len(todo), desc=desc, unit="run", disable=not progress) as bar:
                submit_stage(todo, config, config.runs_root / "sweeps" / f"{name}-submitit", settings,
                             ledger, bar.update)
        else:
            submit_local_stage(todo, config, config.runs_root / "sweeps" / f"{name}-submitit", settings, ledger,
                               desc, progress)
    return ledger


def launcher_settings(launcher: str, given: dict[str, Any] | SlurmSettings | LocalExecutorSettings | None
                      ) -> SlurmSettings | LocalExecutorSettings | None:
    """The one settings type of each launcher (none for `local`), from a mapping or as given."""
    kind = {"slurm": SlurmSettings, "submitit-local": LocalExecutorSettings}.get(launcher)
    if kind is None or isinstance(given, kind):
        return given if kind is not None else None
    if given is not None and not isinstance(given, dict):
        raise AckdError(f"--launcher {launcher}: its settings are a {kind.__name__}, not a {type(given).__name__}")
    # the CLI passes --timeout-min for every launcher; the local executor takes only that
    spec = {k: v for k, v in (given or {}).items() if kind is SlurmSettings or k == "timeout_min"}
    return kind.from_dict(spec)
