"""A sweep's runs on this machine: one run guarded (a failure becomes an outcome), K runs at once each
in its own spawned process, the device memory they need, and the ledger that records every outcome.
The launchers (`sweep.py` chooses one; `slurm.py` holds everything submitit) all run through here.
"""

from __future__ import annotations

import json
import os
import signal
import time
import traceback
from dataclasses import asdict, replace
from multiprocessing import connection
from pathlib import Path
from typing import Any, Callable

from ..errors import AckdError, DatasetError
from ..provenance import write_json_atomic
from ..threads import threads_for
from .grid import GridRun
from .plan import RunPlan

MiB, GiB = 1024**2, 1024**3
# What one run needs on its device besides its resident data, for the largest model at the paper's
# student batch: the CUDA context with cuDNN's and cuBLAS's workspaces, ResNet34's weights, gradients
# and Adam moments in fp32 (21.3M parameters x 16 bytes), and autograd's saved activations, which
# grow with the batch and the pixels. MobileNetV2 saves the most: 6.4 MiB per 64 px image in fp32
# (saved-tensor hooks, parameters excluded; ResNet34 2.7, ShuffleNetV2 1.7; tests/test_sweep_parallel.py
# measures it again), so 6.4 GiB at 128 px and batch 256 alone, where a fixed 3 GiB undercounted.
CONTEXT_BYTES = 1 * GiB
MODEL_STATE_BYTES = 21_300_000 * 16
ACTIVATION_BYTES_PER_IMAGE_64PX = int(6.4 * MiB)
ALLOCATOR_SLACK = 1.25  # the caching allocator's rounding and fragmentation over the live activations


def run_overhead_bytes(image_size: int, batch_size: int = 256, precision: str = "fp32") -> int:
    """One run's device memory besides its data, at the paper's student batch and fp32 by default
    (the most a profile asks: `bench` runs in bf16, which halves the activations)."""
    activations = ACTIVATION_BYTES_PER_IMAGE_64PX * (image_size / 64) ** 2 * batch_size
    if precision in ("bf16", "fp16"):
        activations /= 2
    return int(CONTEXT_BYTES + MODEL_STATE_BYTES + ALLOCATOR_SLACK * activations)


def check_runs_per_gpu(value: int) -> int:
    if not isinstance(value, int) or value < 1:
        raise AckdError(f"--runs-per-gpu {value}: expected a positive integer")
    return value


def run_request(request: GridRun, plan: RunPlan) -> dict[str, Any]:
    """Execute one grid run (reusing finished runs); returns its result record and run directory."""
    from ..train.api import run
    from ..train.request import RunRequest
    from .evaluate import run_student

    plan = replace(plan, options=replace(plan.options.reusing(), progress=False))
    shared = {"profile": plan.profile, "seed": request.seed}
    if request.kind == "teacher":
        return run(RunRequest.teacher_run(request.dataset, request.teacher, overrides=plan.teacher_overrides,
                                            **shared), plan.options)
    if request.kind == "matcher":
        return run(RunRequest.matcher_run(request.dataset, plan.matcher_arch, overrides=plan.matcher_overrides,
                                            **shared), plan.options)
    student = RunRequest.student_run(request.dataset, request.student, request.method,
                                       overrides=plan.student_overrides, ablation=request.ablation, **shared)
    return run_student(student, plan, teacher_arch=request.teacher or None)


def guarded(request: GridRun, plan: RunPlan) -> dict[str, Any]:
    """Never raises: a failure becomes a ledger entry with its error, a stop on a signal (its state
    saved) a "preempted" one."""
    from ..train.engine import Preempted

    started, cpu_started = time.time(), time.process_time()

    def cost() -> dict[str, float]:
        # what a run cost where it ran (its process, every thread), for the sweep's cost per stage
        return {"wall_seconds": round(time.time() - started, 1),
                "cpu_seconds": round(time.process_time() - cpu_started, 1)}

    try:
        result = run_request(request, plan)
        return {"status": "done", "run_dir": result["run_dir"], **cost()}
    except Preempted as exc:
        return {"status": "preempted", "signal": exc.signal_name, "error": str(exc), **cost()}
    except Exception as exc:  # noqa: BLE001 - a sweep records every failure and goes on
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return {"status": "failed", "error": last, **cost()}


def hand_back(signal_name: str) -> None:
    """After the runs saved their state on a stop signal: SIGUSR2 goes to the handler that was there
    before (submitit's, which requeues the job and exits); SIGTERM means Slurm itself is ending the
    job (a requeue, a cancel), so the job exits without a result, which a requeued rerun would
    otherwise find and take for its own."""
    if signal_name == "SIGUSR2":
        handler = signal.getsignal(signal.SIGUSR2)
        if callable(handler):
            handler(signal.SIGUSR2, None)
    raise SystemExit(f"stopped by {signal_name}, state saved")


class StopRelay:
    """The stop signals (SIGUSR2, SIGTERM) of the process that runs a group: recorded, passed on to
    the runs' processes (Slurm may signal only this one), and a deadline after which the runs that
    have not stopped are ended, so the job requeues before its SIGKILL."""

    SIGNALS = ("SIGUSR2", "SIGTERM")

    def __init__(self):
        self.received: str | None = None
        self.deadline: float | None = None
        self.children: list[Any] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRelay":
        from multiprocessing import resource_tracker

        # Slurm signals every process of the job: multiprocessing's resource tracker, started with
        # the first run, would die of SIGUSR2 (its default action) and warn of leaks; it inherits
        # the signal blocked instead
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
        try:
            resource_tracker.ensure_running()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for name in self.SIGNALS:
            number = getattr(signal, name)
            self._previous[number] = signal.signal(number, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _record(self, number: int, frame) -> None:
        del frame
        from ..train.engine import stop_grace_s

        name = signal.Signals(number).name
        if self.received is None:
            self.received, self.deadline = name, time.monotonic() + stop_grace_s(name)
        for process in self.children:
            if process.is_alive():
                os.kill(process.pid, number)

    def overdue(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline - 5.0


# --- several runs on one device ------------------------------------------------------------------

def run_footprint_bytes(dataset_dir: str | Path) -> int:
    """Estimated device memory of one run on this dataset: every split's pixels, as held when
    resident, plus the run's overhead at the dataset's image size (run_overhead_bytes)."""
    from ..data.manifest import pixel_bytes, read_manifest

    manifest = read_manifest(dataset_dir)
    size = max(m.image_size[0] for m in manifest.modalities.values())
    return pixel_bytes(manifest) + run_overhead_bytes(size)


def largest_footprint_bytes(datasets: list[str]) -> int:
    """The largest run footprint over a sweep's datasets. A dataset that is not built is left out:
    its runs fail on their own, with the reason."""
    footprints = [run_overhead_bytes(0)]  # context and model state, for a sweep of datasets not built yet
    for dataset in sorted(set(datasets)):
        try:
            footprints.append(run_footprint_bytes(dataset))
        except DatasetError:
            pass
    return max(footprints)


def runs_that_fit(requested: int, free_bytes: int, footprint_bytes: int) -> int:
    return max(1, min(requested, free_bytes // footprint_bytes))


def cuda_free_bytes(device: str) -> int | None:
    """Free memory of the CUDA device that `device` resolves to; None when it resolves to the CPU
    or cannot be queried (the runs then report the device problem themselves)."""
    import torch

    from ..train.device import resolve_device
    from ..train.feed import reusable_bytes

    try:
        resolved = resolve_device(device)  # the device the runs themselves will resolve
        if resolved.type != "cuda":
            return None
        free, _total = torch.cuda.mem_get_info(resolved)
        free = reusable_bytes(free, torch.cuda.memory_reserved(resolved), torch.cuda.memory_allocated(resolved))
    except (AckdError, RuntimeError, AssertionError, ValueError):
        return None
    return int(free)


def _probe_cuda_free_bytes(device: str) -> int | None:
    """cuda_free_bytes in a short-lived spawned process, so that the parent of the K runs holds no
    CUDA context of its own, which would take memory from them for the whole sweep."""
    if device == "cpu":
        return None
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=_spawn_context()) as pool:
        return pool.submit(cuda_free_bytes, device).result()


def fit_runs_per_gpu(requested: int, device: str, datasets: list[str]) -> int:
    """`requested` runs at once, or fewer where they would not fit in the CUDA device's free memory."""
    if requested <= 1:
        return 1
    free = _probe_cuda_free_bytes(device)
    if free is None:  # CPU: no check
        return requested
    footprint = largest_footprint_bytes(datasets)
    fitted = runs_that_fit(requested, free, footprint)
    if fitted < requested:
        print(f"sweep: --runs-per-gpu {requested} lowered to {fitted}: {free / GiB:.1f} GiB free, "
              f"~{footprint / GiB:.1f} GiB per run", flush=True)
    return fitted


def _spawn_context():
    import multiprocessing

    # spawn, never fork: a forked child would inherit the parent's torch/CUDA state, which CUDA
    # does not support, and every run needs a CUDA context of its own
    return multiprocessing.get_context("spawn")


def _run_in_child(job: Callable, request: GridRun, plan: RunPlan, sender) -> None:
    """Body of one run's process: sends the job's outcome back through `sender`."""
    # the engine acts on a preemption notice while it trains; outside training, the notice must not
    # kill the run (SIGUSR2's default) before its parent has collected what the others saved
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    if plan.options.compile and plan.options.threads:
        # Inductor would start a compile worker per core in each of the K processes
        import torch._inductor.config as inductor_config

        inductor_config.compile_threads = plan.options.threads
    try:
        outcome = job(request, plan)
    except BaseException as exc:  # noqa: BLE001 - guarded never raises; another job or Ctrl-C may
        outcome = {"status": "failed", "error": traceback.format_exception_only(type(exc), exc)[-1].strip()}
    sender.send(outcome)
    sender.close()


def died(exitcode: int | None) -> dict[str, Any]:
    """The outcome of a run whose process ended without reporting one."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        how = f"was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    else:
        how = f"exited with code {exitcode}"
    return {"status": "failed", "error": f"run process {how} before reporting a result"}


def _collect(receiver, process) -> dict[str, Any]:
    try:
        outcome = receiver.recv()
    except EOFError:  # the child's end closed without a message: it died
        outcome = None
    receiver.close()
    process.join(timeout=60)
    if process.is_alive():  # reported, then hung on the way out (a stuck loader worker, say)
        process.terminate()
        process.join()
    return outcome if outcome is not None else died(process.exitcode)


def run_concurrently(requests: list[GridRun], plan: RunPlan, slots: int, *,
                     on_finish: Callable[[GridRun, dict[str, Any]], None] | None = None,
                     job: Callable[[GridRun, RunPlan], dict[str, Any]] = guarded,
                     relay: StopRelay | None = None) -> list[dict[str, Any]]:
    """Run the requests with at most `slots` in flight, each `job(request, plan)` in a fresh
    spawned process: a run that dies takes only itself down and frees its memory. Calls
    `on_finish(request, outcome)` as each finishes; returns the outcomes in request order. Once
    `relay` received a stop signal, nothing more starts and runs still going at its deadline end."""
    context = _spawn_context()
    # K runs each spinning as many OpenMP threads as there are cores starve each other
    plan = plan.with_threads(plan.options.threads or threads_for(min(slots, len(requests))))
    waiting = list(enumerate(requests))
    running: dict[Any, tuple[int, Any]] = {}  # receiving end of a child's pipe -> (index, process)
    outcomes: list[dict[str, Any] | None] = [None] * len(requests)
    try:
        while running or (waiting and not (relay and relay.received)):
            while waiting and len(running) < slots and not (relay and relay.received):
                index, request = waiting.pop(0)
                receiver, sender = context.Pipe(duplex=False)
                # not a daemon: a run's DataLoader workers are processes of its own
                process = context.Process(target=_run_in_child, args=(job, request, plan, sender),
                                          name=f"sweep-run-{index}")
                process.start()
                sender.close()  # the child now holds the only sending end, so its death reads as EOF
                running[receiver] = (index, process)
                if relay is not None:
                    relay.children.append(process)
            if relay is not None and relay.overdue():
                for _index, process in running.values():
                    process.terminate()
            for receiver in connection.wait(list(running), timeout=1.0 if relay else None):
                index, process = running.pop(receiver)
                outcomes[index] = _collect(receiver, process)
                if on_finish is not None:
                    on_finish(requests[index], outcomes[index])
    finally:  # interrupted: leave no run behind
        for receiver, (_index, process) in running.items():
            process.terminate()
            process.join()
            receiver.close()
    for index, _request in waiting:  # not started: a stop signal came first
        outcomes[index] = {"status": "preempted", "signal": relay.received, "error": "not started before the stop"}
    return outcomes


def run_group(requests: list[GridRun], plan: RunPlan, *,
              job: Callable[[GridRun, RunPlan], dict[str, Any]] = guarded,
              relay: StopRelay | None = None) -> list[dict[str, Any]]:
    """One device's group: run these requests (up to K) at once, fewer at a time where they would
    not fit in its free memory; never raises for a failed or dead run. Outcomes in request order."""
    slots = fit_runs_per_gpu(len(requests), plan.options.device, [r.dataset for r in requests])
    return run_concurrently(requests, plan, slots, job=job, relay=relay)


class Ledger:
    """`<runs_root>/sweeps/<name>.json`: the status of every request of a sweep."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                self.entries = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError) as exc:
                raise AckdError(f"{path}: not a readable sweep ledger ({exc}); move it aside to start the sweep's "
                                "record afresh (finished runs are still found by their result.json)") from None
            if not isinstance(self.entries, dict):
                raise AckdError(f"{path}: not a sweep ledger (expected a JSON object)")

    def pending(self, requests: list[GridRun]) -> list[GridRun]:
        return [r for r in requests if self.entries.get(r.key, {}).get("status") != "done"]

    def record(self, request: GridRun, outcome: dict[str, Any]) -> None:
        self.entries[request.key] = {**asdict(request), **outcome}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, self.entries)
