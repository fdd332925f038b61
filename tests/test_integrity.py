"""Runs and the board: nothing a user owns is overwritten, one writer per run, files readable by the lab."""

import json
import os
import socket
import subprocess
import sys

import pytest

from .conftest import run_cli


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    code = ("import os, sys; os.umask(int(sys.argv[2], 8)); from ackd_bench.data.build import build_dataset; "
            "build_dataset('toy', sys.argv[1], progress=False)")
    out = tmp_path / "toy"
    subprocess.run([sys.executable, "-c", code, str(out), oct(umask)], check=True, timeout=300)
    for name in ("manifest.json", "DATASET.md", "ms-train-00000.h5"):
        assert (out / name).stat().st_mode & 0o777 == mode, name


def _one_line(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("flags,message", [
    (["--epochs", "0"], "epochs 0 (the profile's, or --epochs): expected a positive integer"),
    (["--batch-size", "0"], "batch_size 0 (the profile's, or --batch-size): expected a positive integer"),
    (["--lr", "nan"], "lr nan (the profile's, or --lr): expected a finite number above 0"),
])
def test_bad_training_lengths_and_rates_stop_before_a_run_directory_exists(toy_dir, tmp_path, flags, message):
    run_dir = tmp_path / "run"
    _one_line(run_cli("train-teacher", str(toy_dir), "--arch", "S", "--profile", "smoke", "--out", str(run_dir),
                      "--quiet", *flags), message)
    assert not run_dir.exists()


def test_a_second_writer_of_a_run_stops_in_one_line_naming_the_first(toy_dir, tmp_path):
    from filelock import FileLock

    run_dir = tmp_path / "run"
    lock = FileLock(str(tmp_path / ".run.lock"), timeout=0)
    lock.acquire()  # as a first writer holds it
    (tmp_path / ".run.owner.json").write_text(json.dumps({"pid": 4242, "host": "node7", "started": "2026-11-27T08:00"}))
    try:
        _one_line(run_cli("train-teacher", str(toy_dir), "--arch", "S", "--profile", "smoke", "--out", str(run_dir),
                          "--quiet"), f"{run_dir}: another process is writing this run (pid 4242 on node7, "
                                      "started 2026-11-27T08:00)", "--out")
        assert not run_dir.exists()
    finally:
        lock.release()
    # the first writer was killed: its owner file stays behind, the OS lock does not
    result = run_cli("train-teacher", str(toy_dir), "--arch", "S", "--profile", "smoke", "--epochs", "1",
                     "--out", str(run_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / ".run.owner.json").exists()


def test_two_identical_runs_started_together_write_one_log(toy_dir, tmp_path):
    args = [sys.executable, "-m", "ackd_bench.cli", "train-student", str(toy_dir), "--arch", "S", "--profile", "smoke",
            "--epochs", "3", "--runs-root", str(tmp_path / "runs"), "--quiet", "--threads", "1"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    logs = list((tmp_path / "runs").rglob("log.csv"))
    assert len(logs) == 1
    epochs = [line.split(",")[0] for line in logs[0].read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2"]
    assert codes == [0, 2], outcomes
    # usually the second finds the first at work; if it started after the first had finished, it
    # refuses to overwrite the finished run
    assert any("another process is writing this run" in err or "already finished" in err for _, err in outcomes)
