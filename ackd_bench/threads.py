"""CPU threads per training process.

torch starts one intra-op thread per core in every process. Two processes on one machine then run
twice as many busy threads as there are cores, and OpenMP's spin-waiting threads starve each other
(measured in `bench/threads.py`). Every training process therefore sets its threads from the
cores it may use divided by the runs started at once, unless OMP_NUM_THREADS says how many (as
torchrun, Slurm job scripts and test runners set it): the one who started the processes knows how
many share the machine, which a load average read at start-up may not show yet.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on: Slurm's or a container's share, not the whole node."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_for(runs_at_once: int) -> int:
    """The usable cores divided by the runs a launcher starts at once (at least 1)."""
    return max(1, usable_cores() // max(1, runs_at_once))


# the threads this process last trained with: its own share of the load average, which the next
# run it starts (a pipeline of teacher, matcher and students in one process) must not count as
# another process's
_own_threads = 0


def default_threads(runs_at_once: int = 1) -> int:
    """OMP_NUM_THREADS when it is set to a positive number; else `threads_for(runs_at_once)`, less the
    cores that other processes keep busy when this one starts (the 1-minute load average, as `make -l`
    reads it, less this process's own earlier runs): a run started beside another training process
    does not double the machine's busy threads."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    try:
        busy = round(max(0.0, os.getloadavg()[0] - _own_threads))
    except OSError:  # no load average on this system
        busy = 0
    return max(1, min(threads_for(runs_at_once), usable_cores() - busy))


def set_threads(threads: int | None, runs_at_once: int = 1) -> int:
    """Set torch's intra-op threads (`threads`, else `default_threads`); returns the count."""
    import torch

    from .errors import AckdError

    if threads is not None and threads < 1:
        raise AckdError(f"--threads {threads}: expected a positive integer")
    global _own_threads
    count = threads or default_threads(runs_at_once)
    torch.set_num_threads(count)
    _own_threads = count
    return count
