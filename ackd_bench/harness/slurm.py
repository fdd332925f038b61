"""The sweep's Slurm launcher (through submitit): requests that fit the partition, jobs watched
through `squeue`, retries of jobs that died, and a ledger that says what a cancel left undone.

Each job asks for the CPUs and memory its runs need (or what --cpus/--mem say), checked against
the partition's nodes (`sinfo`) before anything is submitted: a request that no node can ever
satisfy is one line naming the partition's limits, instead of a job PENDING forever. A job gone
from `squeue` without a result died (killed, out of memory, node lost): it is recorded as failed
within seconds, without waiting for accounting, and submitted again up to `retries` times.

Preemption: every job gets Slurm's SIGUSR2 PREEMPT_GRACE_S before it is stopped (submitit's
--signal=USR2@90); the engine saves and stops (train/engine.py) and the job requeues itself.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

from tqdm.auto import tqdm

from ..errors import AckdError
from ..threads import threads_for
from ..train.engine import GRACE_ENV, TERM_GRACE_ENV
from .grid import GridRun
from .plan import RunPlan
from .runner import Ledger, StopRelay, guarded, hand_back, largest_footprint_bytes, run_group

PREEMPT_GRACE_S = 90  # seconds between SIGUSR2 and the end of a preempted or timed-out job
POLL_S = 2.0  # between looks at squeue and at the jobs' result files
GONE_S = 6.0  # a job out of squeue this long without a result file died (the file lands before it leaves)
SQUEUE_FAILURES_S = 300.0  # squeue failing this long stops the sweep: the controller is gone
MiB = 1024**2


def _settings_from(cls, spec: dict[str, Any], what: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise AckdError(f"{what} settings {', '.join(unknown)}: unknown; expected some of {', '.join(sorted(known))}")
    return cls(**spec)


@dataclass(frozen=True)
class LocalExecutorSettings:
    """submitit's local executor (`--launcher submitit-local`): how long a job may run."""

    timeout_min: int = 24 * 60

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> "LocalExecutorSettings":
        return _settings_from(cls, spec, "submitit-local")


@dataclass
class SlurmSettings:
    partition: str | None = None
    gpus: int | None = None  # per job; None: 0 with --device cpu, else 1
    cpus: int | None = None  # per job; None: what its runs need, at most a node's
    mem: str | None = None  # per job, as sbatch writes it (4000M, 16G); None: what its runs need
    timeout_min: int = 24 * 60
    parallel: int | None = None  # array tasks at once
    retries: int = 1  # submissions again of a job that died

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> "SlurmSettings":
        return _settings_from(cls, spec, "Slurm")


@dataclass(frozen=True)
class Partition:
    name: str
    cpus: int  # of its largest node
    mem_mb: int
    gpus: int
    max_minutes: float  # math.inf when unlimited

    def limits(self) -> str:
        time_limit = "no time limit" if math.isinf(self.max_minutes) else f"a time limit of {self.max_minutes:.0f} min"
        gpus = f"{self.gpus} GPUs" if self.gpus else "no GPUs"
        return f"partition {self.name} offers at most {self.cpus} CPUs, {self.mem_mb} MB and {gpus} per node, {time_limit}"


def _slurm(*argv: str, what: str) -> str:
    """Run a Slurm command; its failure is one line."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise AckdError(f"--launcher slurm: `{argv[0]}` not found; expected a machine with the Slurm client "
                        "commands (a login node)") from None
    except subprocess.TimeoutExpired:
        raise AckdError(f"{what}: `{' '.join(argv)}` did not answer within 60 s") from None
    if done.returncode:
        raise AckdError(f"{what}: {last_line(done.stderr or done.stdout) or f'exit code {done.returncode}'}")
    return done.stdout


def last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def parse_minutes(text: str) -> float:
    """Slurm's time limits: infinite, MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""
    text = text.strip()
    if text in ("infinite", "UNLIMITED", "n/a", ""):
        return math.inf
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # D-HH[:MM[:SS]]
        parts += [0] * (3 - len(parts))
        hours, minutes, seconds = parts
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    else:  # MM or MM:SS
        hours, minutes, seconds = 0, parts[0], parts[1] if len(parts) > 1 else 0
    return int(days or 0) * 1440 + hours * 60 + minutes + seconds / 60


def gpus_in(gres: str) -> int:
    """GPUs in a node's gres, e.g. gpu:4, gpu:a100:8(S:0-1), (null)."""
    return sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", gres))


def read_partition(name: str | None) -> Partition:
    """The largest node of the partition (the default one when `name` is None), from sinfo."""
    out = _slurm("sinfo", "-h", "-N", "-o", "%P|%c|%m|%G|%l", what="sinfo (the partition's nodes)")
    nodes: dict[str, list[list[str]]] = {}
    default = None
    for line in out.splitlines():
        part, *rest = line.strip().split("|")
        if len(rest) != 4:
            continue
        if part.endswith("*"):
            part = default = part[:-1]
        nodes.setdefault(part, []).append(rest)
    chosen = name or default
    if chosen not in nodes:
        where = f"--partition {name}" if name else "no --partition"
        raise AckdError(f"{where}: no such partition on this cluster; expected one of {', '.join(sorted(nodes)) or 'none'}"
                        + ("" if name else " (there is no default partition)"))
    rows = nodes[chosen]
    return Partition(chosen, max(int(r[0].rstrip("+")) for r in rows), max(int(r[1].rstrip("+")) for r in rows),
                     max(gpus_in(r[2]) for r in rows), max(parse_minutes(r[3]) for r in rows))


def parse_mem_mb(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise AckdError(f"--mem {text}: expected an amount such as 4000M or 16G")
    scale = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[match.group(2).upper()]
    mb = math.ceil(float(match.group(1)) * scale)
    if mb < 1:
        raise AckdError(f"--mem {text}: expected at least 1M")
    return mb


def run_needs(config, datasets: list[str], gpus: int) -> tuple[int, int]:
    """(CPUs, MB) one job's runs need: per run its torch threads (or one core) and its loader
    workers, and its dataset's pixels plus a fixed overhead; times the runs sharing the job."""
    workers = config.options.workers if config.options.workers is not None else (4 if gpus else 0)
    per_run_cpus = (config.options.threads or 1) + workers
    per_run_mb = math.ceil(largest_footprint_bytes(datasets) / MiB)
    return config.runs_per_gpu * per_run_cpus, config.runs_per_gpu * per_run_mb


def job_resources(settings: SlurmSettings, config, datasets: list[str], partition: Partition) -> dict[str, Any]:
    """submitit's parameters for every job of the sweep; an impossible request is one line."""
    cpu_only = config.options.device == "cpu"
    gpus = settings.gpus if settings.gpus is not None else (0 if cpu_only else 1)
    if gpus < 0 or (cpu_only and gpus):
        raise AckdError(f"--gpus {settings.gpus} with --device {config.options.device}: expected 0 (or no --gpus)"
                        if cpu_only else f"--gpus {gpus}: expected 0 or more")
    need_cpus, need_mb = run_needs(config, datasets, gpus)
    cpus = settings.cpus if settings.cpus is not None else min(need_cpus, partition.cpus)
    mem_mb = parse_mem_mb(settings.mem) if settings.mem is not None else min(need_mb, partition.mem_mb)
    problems = []
    if gpus > partition.gpus:
        problems.append(f"--gpus {gpus}" + ("" if settings.gpus is not None else f" (--device {config.options.device})"))
    if cpus < 1 or cpus > partition.cpus:
        problems.append(f"--cpus {cpus}")
    if mem_mb > partition.mem_mb:
        problems.append(f"--mem {mem_mb}M")
    if settings.timeout_min < 1 or settings.timeout_min > partition.max_minutes:
        problems.append(f"--timeout-min {settings.timeout_min}")
    if problems:
        hint = "; use --device cpu" if gpus > partition.gpus and not cpu_only else ""
        raise AckdError(f"{', '.join(problems)}: more than any node can give, {partition.limits()}{hint}")
    params: dict[str, Any] = {"timeout_min": settings.timeout_min, "slurm_partition": partition.name,
                              "cpus_per_task": cpus, "slurm_mem": f"{mem_mb}M",
                              "slurm_signal_delay_s": PREEMPT_GRACE_S}
    if gpus:
        params["gpus_per_node"] = gpus
    if settings.parallel:
        params["slurm_array_parallelism"] = settings.parallel
    return params


def kill_wait_s() -> float | None:
    """Slurm's KillWait: the seconds between SIGTERM and SIGKILL when a job is requeued or cancelled."""
    try:
        out = _slurm("scontrol", "show", "config", what="scontrol show config")
    except AckdError:
        return None
    match = re.search(r"^KillWait\s*=\s*(\d+)", out, re.MULTILINE)
    return float(match.group(1)) if match else None


def queued_jobs() -> dict[str, str] | None:
    """Job (and array task) id -> state for everything in squeue; None when squeue fails."""
    try:
        out = _slurm("squeue", "-h", "-r", "-o", "%i|%T", what="squeue")
    except AckdError:
        return None
    return dict(line.strip().split("|", 1) for line in out.splitlines() if "|" in line)


def ended_state(job_id: str) -> str | None:
    """The final state that accounting recorded (CANCELLED, FAILED, OUT_OF_MEMORY...), or None
    without accounting."""
    try:
        out = _slurm("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State", what="sacct")
    except AckdError:
        return None
    states = [line.strip() for line in out.splitlines() if line.strip()]
    return states[-1] if states else None


def gone_outcome(job) -> dict[str, Any]:
    state = ended_state(job.job_id)
    if state and state.startswith("CANCELLED"):
        return {"status": "cancelled", "error": f"Slurm job {job.job_id} was cancelled ({state})"}
    why = state or "no accounting to say why"
    return {"status": "failed", "died": True,
            "error": f"Slurm job {job.job_id} ended without a result ({why}); its log: {job.paths.stderr}"}


def job_outcome(job) -> list[dict[str, Any]]:
    """The outcomes a finished job reported (one per run of its group)."""
    try:
        reported = job.result()
    except Exception as exc:  # noqa: BLE001 - the job's own exception, pickled by submitit
        return [{"status": "failed", "died": True, "error": f"Slurm job {job.job_id}: {last_line(exc)}"}]
    return reported if isinstance(reported, list) else [reported]


def watch(jobs: list, interval: float = POLL_S) -> Iterator[tuple[int, list[dict[str, Any]] | None]]:
    """Yields (index, outcomes) as each job ends; outcomes is None for a job that died, with
    `gone_outcome` then the reason. Polls squeue, never sacct, so it works without accounting."""
    left = dict(enumerate(jobs))
    gone_since: dict[int, float] = {}
    failing_since: float | None = None
    while left:
        queue = queued_jobs()
        now = time.monotonic()
        if queue is None:
            failing_since = failing_since or now
            if now - failing_since > SQUEUE_FAILURES_S:
                raise AckdError(f"squeue has failed for {SQUEUE_FAILURES_S:.0f} s; the Slurm controller is not "
                                "answering (the jobs may still run: rerun the sweep to collect them)")
        else:
            failing_since = None
        for index, job in list(left.items()):
            if job.paths.result_pickle.exists():
                del left[index]
                yield index, job_outcome(job)
            elif queue is not None and job.job_id not in queue:
                if now - gone_since.setdefault(index, now) >= GONE_S:
                    del left[index]
                    yield index, None
            else:
                gone_since.pop(index, None)
        if left:
            time.sleep(interval)


def cancel(jobs: list) -> None:
    ids = [job.job_id for job in jobs]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60)


def _interrupt_on_term(number, frame):
    raise KeyboardInterrupt


def submit_stage(todo: list, config, folder: Path, settings: SlurmSettings, ledger, progress) -> None:
    """Submit a stage's requests (one array task per request or per group of K sharing a GPU),
    record each as its job ends, submit again what died; on an interrupt, cancel what is left and
    record it as cancelled."""
    import submitit

    partition = read_partition(settings.partition)
    params = job_resources(settings, config, [r.dataset for r in todo], partition)
    grace = [f"export {GRACE_ENV}={PREEMPT_GRACE_S}"]
    kill_wait = kill_wait_s()
    if kill_wait is not None:
        grace.append(f"export {TERM_GRACE_ENV}={kill_wait:g}")
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(**params, slurm_setup=grace)
    # the job's torch threads share the CPUs it asked for, not the node's
    config = config.with_threads(config.options.threads or max(1, params["cpus_per_task"] // config.runs_per_gpu))
    size = config.runs_per_gpu
    groups = [todo[i:i + size] for i in range(0, len(todo), size)]
    failures: dict[str, list[str]] = {}
    attempt = 0
    while groups:
        attempt += 1
        jobs = _submit(executor, groups, config)
        retry: list[list] = []
        previous = signal.signal(signal.SIGTERM, _interrupt_on_term)
        try:
            for index, outcomes in watch(jobs):
                group = groups[index]
                if outcomes is None:
                    outcomes = [gone_outcome(jobs[index])] * len(group)
                if any(o.get("died") for o in outcomes) and attempt <= settings.retries:
                    print(f"sweep: Slurm job {jobs[index].job_id} died; submitting its runs again "
                          f"(retry {attempt} of {settings.retries})", file=sys.stderr, flush=True)
                for request, outcome in zip(group, outcomes):
                    outcome = dict(outcome)
                    died = outcome.pop("died", False)
                    earlier = failures.get(request.key, [])
                    if died:
                        failures[request.key] = earlier + [outcome["error"]]
                    ledger.record(request, {**outcome, "attempts": attempt,
                                            **({"failures": failures[request.key]} if request.key in failures else {})})
                    if died and attempt <= settings.retries:
                        retry.append(request)
                    else:
                        progress(1)
        except KeyboardInterrupt:
            left = [job for job in jobs if not job.paths.result_pickle.exists()]
            cancel(left)
            for job, group in zip(jobs, groups):
                if job in left:
                    for request in group:
                        ledger.record(request, {"status": "cancelled", "attempts": attempt,
                                                "error": f"the sweep was interrupted; Slurm job {job.job_id} cancelled"})
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        groups = [retry[i:i + size] for i in range(0, len(retry), size)]


def _submit(executor, groups: list[list], config) -> list:
    # submitit prints sbatch's stderr when sbatch fails, then raises with the same text: held back,
    # so that a refusal reads as one line
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            if config.runs_per_gpu == 1:
                return executor.map_array(SlurmJob(), [g[0] for g in groups], [config] * len(groups))
            return executor.map_array(SlurmGroupJob(), groups, [config] * len(groups))
        except Exception as exc:  # noqa: BLE001 - sbatch's refusal, whatever submitit wraps it in
            raise AckdError(f"sbatch refused the sweep's jobs: {last_line(exc)}") from None


# --- submitit's callables, and its local executor ------------------------------------------------

class SlurmJob:
    """submitit callable that asks to be requeued when preempted; the rerun resumes its checkpoint."""

    def __call__(self, request: GridRun, config: RunPlan) -> dict[str, Any]:
        outcome = guarded(request, config)
        if outcome["status"] == "preempted":
            print(f"sweep: {request.label}: {outcome['error']}", file=sys.stderr, flush=True)
            hand_back(outcome["signal"])
        return outcome

    def checkpoint(self, request: GridRun, config: RunPlan):
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmJob(), request, config)


class SlurmGroupJob:
    """submitit callable for runs_per_gpu > 1: one array task (one GPU) runs a group of requests at
    once. A requeued group reruns whole: finished runs are reused, interrupted ones resume."""

    def __call__(self, requests: list[GridRun], config: RunPlan) -> list[dict[str, Any]]:
        with StopRelay() as relay:
            outcomes = run_group(requests, config, relay=relay)
        for request, outcome in zip(requests, outcomes):
            if outcome["status"] == "preempted":
                print(f"sweep: {request.label}: {outcome['error']}", file=sys.stderr, flush=True)
        if relay.received:
            hand_back(relay.received)
        return outcomes

    def checkpoint(self, requests: list[GridRun], config: RunPlan):
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmGroupJob(), requests, config)


def submit_local_stage(todo: list[GridRun], config: RunPlan, folder: Path, settings: LocalExecutorSettings,
                       ledger: Ledger, desc: str, progress: bool) -> None:
    """submitit's local executor: one task per request, or per group of K requests; waits for all."""
    import submitit

    if config.options.threads is None:
        # submitit's local executor starts every job at once: they share this machine's cores
        config = config.with_threads(threads_for(len(todo)))
    executor = submitit.AutoExecutor(folder=folder, cluster="local")
    executor.update_parameters(timeout_min=settings.timeout_min)
    size = config.runs_per_gpu
    if size == 1:
        jobs = executor.map_array(SlurmJob(), todo, [config] * len(todo))
        for request, job in tqdm(list(zip(todo, jobs)), desc=desc, unit="run", disable=not progress):
            try:
                outcome = job.result()
            except Exception as exc:  # noqa: BLE001 - the job itself died (killed, out of memory, ...)
                outcome = _job_died(exc)
            ledger.record(request, outcome)
        return
    groups = [todo[i:i + size] for i in range(0, len(todo), size)]
    jobs = executor.map_array(SlurmGroupJob(), groups, [config] * len(groups))
    with tqdm(total=len(todo), desc=desc, unit="run", disable=not progress) as bar:
        for group, job in zip(groups, jobs):
            try:
                outcomes = job.result()
            except Exception as exc:  # noqa: BLE001 - the whole task died: every run of its group with it
                outcomes = [_job_died(exc)] * len(group)
            for request, outcome in zip(group, outcomes):
                ledger.record(request, outcome)
                bar.update()


def _job_died(exc: Exception) -> dict[str, Any]:
    return {"status": "failed", "error": str(exc).strip().splitlines()[-1][:500]}
