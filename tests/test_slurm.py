"""The sweep against a real one-node Slurm 22.05 cluster with accounting (tests/slurm/), through the
CLI: teacher then students (array jobs, runs grouped per --runs-per-gpu), a second invocation that
skips what is done, preemption (SIGUSR2) and `scontrol requeue` resumed from the checkpoint saved
in the grace period, a killed job recorded and retried, a cancelled sweep, requests that cannot fit.

Skipped, with the reason, where Slurm is not installed (`.ci/run` installs it) or not root."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ackd_bench.cli import main
from tests.conftest import run_cli
from tests.slurm import cluster as slurm_cluster

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="session")
def slurm_session():
    """The cluster, up for the session; its daemons stopped by PID at the end."""
    reason = slurm_cluster.missing()
    if reason:
        pytest.skip(reason)
    started = slurm_cluster.Cluster()
    try:
        started.start()
        yield started
    finally:
        started.stop()


@pytest.fixture
def slurm(slurm_session):
    """The cluster, with no job of an earlier test left in its queue."""
    yield slurm_session
    slurm_session._run("scancel", "--user", "root")
    _wait_for("an empty queue", lambda: not _queue(slurm_session), timeout=60)


def _env(slurm) -> dict[str, str]:
    return {"SLURM_CONF": slurm.env["SLURM_CONF"], "PATH": slurm.env["PATH"]}


def _sweep_args(dataset: Path, runs: Path, *extra: str) -> list[str]:
    return ["sweep", "--datasets", str(dataset), "--tables", "3", "--seeds", "0", "--profile", "smoke",
            "--device", "cpu", "--launcher", "slurm", "--runs-root", str(runs), "--quiet", *extra]


def _ledger(runs: Path, name: str = "sweep") -> dict:
    path = runs / "sweeps" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _jobs(slurm) -> list[dict[str, str]]:
    out = slurm._run("sacct", "-n", "-X", "-P", "--duplicates", "-o", "JobID,JobName,State,Start,End").stdout
    keys = ("id", "name", "state", "start", "end")
    return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]


def _queue(slurm) -> dict[str, str]:
    out = slurm._run("squeue", "-h", "-r", "-o", "%i|%T").stdout
    return dict(line.split("|") for line in out.splitlines() if "|" in line)


def _wait_for(what: str, ready, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _logged_epochs(run_dir: Path) -> list[int]:
    path = run_dir / "log.csv"
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def _saved_epoch(run_dir: Path) -> int | None:
    path = run_dir / "checkpoints" / "last.pt"
    return torch.load(path, map_location="cpu", weights_only=False)["epoch"] if path.exists() else None


class StoppedStates:
    """(checkpoint epoch, logged epochs) of each signalled job's runs as its stopped instance left them,
    read as soon as its process ends. Read later, they may be a requeued instance's: it starts 10 s
    after the stop at the earliest (cred_expire) and resumes from the checkpoint, then logs the epochs
    it trains while last.pt waits for its next save (--checkpoint-every, 600 s): a log past the
    checkpoint that looks like lost work (log 0-3, checkpoint 1 in #35, with the other sweep's job
    slow to start on busy cores)."""

    def __init__(self, alive=lambda pid: Path(f"/proc/{pid}").exists(),
                 read=lambda run_dir: (_saved_epoch(run_dir), _logged_epochs(run_dir))):
        self.alive, self.read = alive, read
        self.ending: dict[int, list[Path]] = {}  # process -> its runs, until it ends
        self.states: dict[Path, tuple[int | None, list[int]]] = {}

    def watch(self, pid: int, run_dirs) -> None:
        self.ending[pid] = list(run_dirs)

    def poll(self) -> bool:
        """Read the runs of the processes that ended since; True once every watched one ended."""
        for pid, run_dirs in list(self.ending.items()):
            if not self.alive(pid):
                self.states.update({run_dir: self.read(run_dir) for run_dir in run_dirs})
                del self.ending[pid]
        return not self.ending


def _run_dirs(runs: Path) -> dict[str, Path]:
    """Run directories being trained, by their log (teachers: S, M...), once they log an epoch."""
    return {json.loads((d / "config.json").read_text()).get("arch", d.name) if (d / "config.json").exists() else d.name: d
            for d in (p.parent for p in runs.rglob("log.csv"))}


def _own_job(runs: Path) -> str:
    """The id of the one job a sweep submitted so far (submitit names its files by it)."""
    (job,) = [p.name.removesuffix("_submitted.pkl") for p in runs.rglob("*_submitted.pkl")]
    return job


def _job_process(job_id: str) -> int | None:
    """PID of the job's Python process (submitit's, the one running the runs), or None."""
    array, _, task = job_id.partition("_")
    wanted = {f"SLURM_ARRAY_JOB_ID={array}".encode(), f"SLURM_ARRAY_TASK_ID={task}".encode()} if task else \
        {f"SLURM_JOB_ID={job_id}".encode()}
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if (Path(argv[0].decode()).name.startswith("python") and b"submitit.core._submit" in argv
                    and wanted <= set((proc / "environ").read_bytes().split(b"\0"))):
                return int(proc.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def _sweep_in_background(args: list[str], slurm) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ackd_bench.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **_env(slurm), "PYTHONUNBUFFERED": "1"})


def test_a_sweep_runs_teacher_then_grouped_students_and_a_second_invocation_skips_it(slurm, mini_toy, tmp_path):
    runs = tmp_path / "runs"
    args = _sweep_args(mini_toy, runs, "--methods", "none", "kd", "dkd", "--pairs", "S/S", "--tables", "3", "4",
                       "--epochs", "1", "--teacher-epochs", "1", "--runs-per-gpu", "2", "--cpus", "1")
    before = len(_jobs(slurm))
    done = run_cli(*args, env_extra=_env(slurm))
    assert done.returncode == 0, done.stderr
    assert "4/4 runs done, 0 failed" in done.stdout
    ledger = _ledger(runs)
    assert sorted(e["kind"] for e in ledger.values()) == ["student"] * 3 + ["teacher"]
    assert all(e["status"] == "done" and Path(e["run_dir"], "result.json").is_file() for e in ledger.values())
    # the sweep ends on the jobs' results; accounting records their ends a moment later
    jobs = _wait_for("the jobs' ends in accounting", lambda: (lambda jobs: len(jobs) == 3 and all(
        j["state"] == "COMPLETED" for j in jobs) and jobs)(_jobs(slurm)[before:]), timeout=30)
    jobs = sorted(jobs, key=lambda j: j["start"])
    # the teacher's job, then an array job of two tasks, students in groups of K=2 ([2, 1]), after it
    teacher, *students = jobs
    assert "_" not in teacher["id"] and sorted(j["id"].split("_")[1] for j in students) == ["0", "1"], jobs
    assert all(j["start"] >= teacher["end"] for j in students)

    again = run_cli(*args, env_extra=_env(slurm))
    assert again.returncode == 0, again.stderr
    assert "4/4 runs done, 0 failed" in again.stdout
    assert len(_jobs(slurm)) == before + 3  # nothing submitted


def test_preempted_and_requeued_jobs_resume_from_the_checkpoint_of_their_grace_period(slurm, mini_toy, tmp_path):
    """Two sweeps at once: a group of two runs in one job (--runs-per-gpu 2) preempted with SIGUSR2,
    and a job of one run requeued with `scontrol requeue` (SIGTERM)."""
    epochs = 5
    args = ["--methods", "teacher", "--teacher-epochs", str(epochs), "--cpus", "1"]
    grouped, single = tmp_path / "grouped", tmp_path / "single"
    sweeps = [_sweep_in_background(_sweep_args(mini_toy, grouped, *args, "--pairs", "S/S", "M/S", "--runs-per-gpu",
                                               "2"), slurm),
              _sweep_in_background(_sweep_args(mini_toy, single, *args, "--pairs", "S/S"), slurm)]
    try:
        # each job is signalled once all its runs have logged an epoch (when the job started differs)
        how = {grouped: (2, ["scancel", "--signal=USR2"]), single: (1, ["scontrol", "requeue"])}
        before, jobs = {}, {}
        # each job's runs are read the moment its process ends, also while the other job is still to
        # be signalled: its requeued instance may restart from 10 s after that (StoppedStates)
        stopped = StoppedStates()
        deadline = time.monotonic() + 90
        while len(jobs) < 2 and time.monotonic() < deadline:
            for root, (runs, command) in how.items():
                dirs = _run_dirs(root)
                if root not in jobs and len(dirs) == runs and all(_logged_epochs(d) for d in dirs.values()):
                    job = _own_job(root)
                    before.update({d: len(_logged_epochs(d)) for d in dirs.values()})
                    pid = _wait_for(f"job {job}'s process", lambda job=job: _job_process(job))
                    slurm._run(*command, job)
                    stopped.watch(pid, dirs.values())
                    jobs[root] = job
            stopped.poll()
            time.sleep(0.1)
        assert len(jobs) == 2 and all(0 < n < epochs for n in before.values()), (jobs, before)
        # its runs saved and stopped
        _wait_for("the signalled jobs' processes to end", stopped.poll, timeout=90)
        for run_dir, logged_before in before.items():
            saved, logged = stopped.states[run_dir]
            # the checkpoint holds every epoch logged before the notice: at most the epoch in progress lost
            assert saved is not None and logged == list(range(saved + 1)), (run_dir, saved, logged)
            assert saved + 1 >= logged_before, (run_dir, saved, logged_before)
        finished = [sweep.communicate(timeout=150) for sweep in sweeps]
    finally:
        for sweep in sweeps:
            sweep.kill()
    assert [sweep.returncode for sweep in sweeps] == [0, 0], [err for _out, err in finished]
    assert "2/2 runs done, 0 failed" in finished[0][0] and "1/1 runs done, 0 failed" in finished[1][0]
    for run_dir in before:
        assert _logged_epochs(run_dir) == list(range(epochs)), run_dir  # resumed: no epoch twice, none missing
    # once stopped and requeued each, then completed (the stopped instance: REQUEUED in accounting)
    for job in jobs.values():
        states = sorted(j["state"] for j in _jobs(slurm) if j["id"] == job)
        assert states == ["COMPLETED", "REQUEUED"], (job, states)
    log = "".join(p.read_text() for p in grouped.rglob(f"{jobs[grouped]}_0_log.err"))
    assert log.count("stopped by SIGUSR2 after epoch") == 2, log  # both runs of the group saved


def test_a_killed_job_is_recorded_failed_then_retried(slurm, mini_toy, tmp_path):
    # no --gpus, --cpus or --mem: --device cpu asks for no GPU, CPUs and memory come from the run
    runs = tmp_path / "runs"
    proc = _sweep_in_background(_sweep_args(mini_toy, runs, "--methods", "teacher", "--pairs", "S/S",
                                            "--teacher-epochs", "3", "--retries", "1"), slurm)
    try:
        _wait_for("the teacher to log an epoch", lambda: _run_dirs(runs))
        job = _own_job(runs)
        started = time.monotonic()
        # the job's Python process, as the OOM killer would: no notice, no result (`scancel --signal=KILL`
        # would cancel the job instead)
        os.kill(_wait_for("the job's process", lambda: _job_process(job)), signal.SIGKILL)
        entry = _wait_for("the failure in the ledger", lambda: next(
            (e for e in _ledger(runs).values() if e["status"] == "failed"), None), timeout=60)
        assert time.monotonic() - started < 60
        assert f"Slurm job {job} ended without a result" in entry["error"] and entry["attempts"] == 1
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"sweep: Slurm job {job} died; submitting its runs again (retry 1 of 1)" in err
    (entry,) = _ledger(runs).values()
    assert entry["status"] == "done" and entry["attempts"] == 2 and len(entry["failures"]) == 1
    assert "1/1 runs done, 0 failed" in out


def test_a_cancelled_sweep_cancels_its_jobs_and_its_ledger_says_so(slurm, mini_toy, tmp_path):
    runs = tmp_path / "runs"
    proc = _sweep_in_background(_sweep_args(mini_toy, runs, "--methods", "teacher", "--pairs", "S/S",
                                            "--teacher-epochs", "50"), slurm)
    try:
        job = _wait_for("a running job", lambda: next((i for i, s in _queue(slurm).items() if s == "RUNNING"), None))
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "ackd-bench: interrupted; rerun the same command to resume"
    (entry,) = _ledger(runs).values()
    assert entry["status"] == "cancelled" and f"Slurm job {job} cancelled" in entry["error"]
    _wait_for("the job to leave the queue", lambda: job not in _queue(slurm), timeout=30)


def test_requests_that_cannot_fit_are_one_line_and_submit_nothing(slurm, mini_toy, tmp_path, monkeypatch, capsys):
    for key, value in _env(slurm).items():
        monkeypatch.setenv(key, value)
    cpus, mem = slurm.values["CPUS"], slurm.values["MEMORY_MB"]
    limits = f"partition debug offers at most {cpus} CPUs, {mem} MB and no GPUs per node, no time limit"
    cases = {
        ("--cpus", str(cpus + 1)): f"--cpus {cpus + 1}: more than any node can give, {limits}",
        ("--mem", "64T"): f"--mem {64 * 1024**2}M: more than any node can give, {limits}",
        ("--device", "auto"): f"--gpus 1 (--device auto): more than any node can give, {limits}; use --device cpu",
        ("--gpus", "1"): "--gpus 1 with --device cpu: expected 0 (or no --gpus)",
        ("--partition", "gpu"): "--partition gpu: no such partition on this cluster; expected one of debug",
        ("--mem", "lots"): "--mem lots: expected an amount such as 4000M or 16G",
        ("--retries", "-1"): "--retries -1: expected 0 or more",
    }
    runs = tmp_path / "runs"
    for extra, message in cases.items():
        args = _sweep_args(mini_toy, runs, "--methods", "teacher", "--pairs", "S/S")
        if extra[0] == "--device":
            del args[args.index("--device"):args.index("--device") + 2]
        assert main([*args, *extra]) == 2, extra
        assert capsys.readouterr().err == f"ackd-bench: error: {message}\n", extra
    assert not list(runs.rglob("*_submitted.pkl")) and not _queue(slurm)

    # what only sbatch refuses is one line too: a partition that takes no jobs
    slurm._run("scontrol", "update", "PartitionName=debug", "State=INACTIVE")
    try:
        assert main(_sweep_args(mini_toy, runs, "--methods", "teacher", "--pairs", "S/S")) == 2
    finally:
        slurm._run("scontrol", "update", "PartitionName=debug", "State=UP")
    err = capsys.readouterr().err
    assert err.startswith("ackd-bench: error: sbatch refused the sweep's jobs: ") and err.count("\n") == 1, err
