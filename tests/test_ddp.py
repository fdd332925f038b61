"""Two processes under torchrun on the CPU (gloo): every parameter of teacher, matcher and student
runs must reach the loss, or DDP stops in its second step ("Expected to have finished reduction")."""

import json
import os
import subprocess
import sys

import pytest


def torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ackd_bench.cli", *args, "--device", "cpu", "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def test_two_process_teacher_matches_single_process(teacher_ckpt, toy_dir, tmp_path):
    result = torchrun("train-teacher", str(toy_dir), "--arch", "S", "--profile", "smoke", "--epochs", "6",
                      "--out", str(tmp_path / "ddp"))
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "result.json").read_text())
    single = json.loads((teacher_ckpt.parent.parent / "result.json").read_text())
    assert ddp["device"] == "cpu x2"
    assert ddp["n_test"] == single["n_test"]
    # Not equal: each rank's BatchNorm sees its 8 images of the global 16 (--sync-batchnorm is for GPUs),
    # and 6 short epochs amplify that. Measured: 0.80 against 0.94, the DDP run's val OA rising each
    # epoch to 0.85. A DDP run that does not learn (chance is 1/6) or tests half the split fails here.
    assert ddp["oa"] >= 0.6 and abs(ddp["oa"] - single["oa"]) <= 0.2
    assert result.stdout.count("test OA") == 1  # one writer


@pytest.mark.parametrize("command", ["train-matcher", "train-student"])
def test_two_process_matcher_and_sembridge_student_train(command, mini_toy, mini_teacher, mini_matcher, tmp_path):
    extra = ["--method", "sembridge+rkd", "--teacher", str(mini_teacher), "--matcher", str(mini_matcher),
             "--dynm", "0,1,0"] if command == "train-student" else []
    done = torchrun(command, str(mini_toy), "--arch", "S", "--profile", "smoke", "--epochs", "1",
                    "--out", str(tmp_path / "run"), *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Expected to have finished reduction" not in done.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["device"] == "cpu x2"
