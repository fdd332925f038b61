import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ackd_bench.data.dataset import ShardDataset
from ackd_bench.results import RESULT_FIELDS
from ackd_bench.train.api import RunOptions, train_classifier, train_student
from ackd_bench.train.checkpoint import CheckpointError
from ackd_bench.train.engine import Runtime, TrainingError
from ackd_bench.train.request import RunRequest
from ackd_bench.train.runs import predict
from ackd_bench.train.teacher_cache import build_or_load_cache, cache_file, load_teacher


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["module"]


def test_teacher_run_writes_checkpoint_log_and_result(teacher_ckpt, toy_dir):
    run_dir = teacher_ckpt.parent.parent
    result = json.loads((run_dir / "result.json").read_text())
    assert list(result) == list(RESULT_FIELDS)
    assert result["method"] == "teacher" and result["teacher"] == "S" and result["student"] is None
    assert result["n_test"] == len(ShardDataset(toy_dir, "ms", "test"))
    assert result["dataset_version"] == json.loads((toy_dir / "manifest.json").read_text())["dataset_version"]
    assert (run_dir / "result.csv").read_text().splitlines()[0] == ",".join(RESULT_FIELDS)
    log = (run_dir / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,lr,train_loss") and len(log) == 1 + 6
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 5 and {"optimizer", "scheduler", "rng", "module"} <= set(state)


def test_ms_teacher_beats_rgb_student_without_kd(teacher_ckpt, toy_dir, tmp_path):
    teacher = json.loads((teacher_ckpt.parent.parent / "result.json").read_text())
    student = train_student(RunRequest.student_run(toy_dir, "S", "none", profile="smoke", overrides={"epochs": 6}),
                            RunOptions(run_dir=tmp_path / "student", progress=False))
    assert student["method"] == "none" and student["student"] == "S" and student["teacher"] is None
    assert teacher["oa"] > 0.85
    assert teacher["oa"] > student["oa"] + 0.1


def test_resume_after_kill_gives_the_same_weights(mini_toy, tmp_path, cli):
    # last.pt after every epoch, so the kill lands mid-run; one thread each, as the default follows the
    # machine's load average and CPU kernels sum in another order on another thread count
    args = ["train-student", str(mini_toy), "--arch", "S", "--profile", "smoke", "--epochs", "4", "--quiet",
            "--checkpoint-every", "0", "--threads", "1"]
    straight = cli(*args, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "ackd_bench.cli", *args, "--out", str(killed_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (killed_dir / "checkpoints" / "last.pt").exists():
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "result.json").exists(), "the run finished before it could be killed"

    again = cli(*args, "--out", str(killed_dir))  # without --resume: refuses, overwrites nothing
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = cli(*args, "--out", str(killed_dir), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = _weights(tmp_path / "straight/checkpoints/last.pt"), _weights(killed_dir / "checkpoints/last.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = (killed_dir / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["0", "1", "2", "3"]


def test_resume_without_checkpoint(toy_dir, tmp_path, cli):
    result = cli("train-teacher", str(toy_dir), "--arch", "S", "--profile", "smoke", "--out", str(tmp_path / "r"),
                 "--resume", "--quiet")
    assert result.returncode == 2
    assert "--resume given but the run has no checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_teacher_cache_equals_live_teacher(teacher_ckpt, toy_dir):
    ms_train = ShardDataset(toy_dir, "ms", "train")
    rt = Runtime(device=torch.device("cpu"), progress=False)
    cache = build_or_load_cache(teacher_ckpt, ms_train, rt, batch_size=64)
    teacher, _ = load_teacher(teacher_ckpt, ms_train.manifest)
    indices = [5, 0, 300, len(ms_train) - 1]
    live = predict(teacher, ms_train, rt, batch_size=3, indices=indices, outputs=("logits", "pooled", "tokens"))
    cached = cache.lookup(torch.tensor(indices), torch.device("cpu"))
    torch.testing.assert_close(cached["logits"], live["logits"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached["pooled"], live["pooled"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached["tokens"], live["tokens"], rtol=2e-3, atol=2e-3)  # stored in fp16
    assert cache.tensors["tokens"].dtype == torch.float16
    assert cache_file(cache.keys).is_file() and not (teacher_ckpt.parent.parent / "cache").exists()
    again = build_or_load_cache(teacher_ckpt, ms_train, rt)  # read back, not recomputed
    assert torch.equal(again.tensors["logits"], cache.tensors["logits"])


def test_teacher_from_another_dataset_is_refused(teacher_ckpt, toy_dir, tmp_path):
    state = torch.load(teacher_ckpt, map_location="cpu", weights_only=False)
    for field, value, expected in (("bands", ["B1"], "a teacher of MS bands B1, but this run feeds B02 B03"),
                                   ("dataset_version", "0" * 64, "checkpoint has dataset_version="),
                                   ("classes", ["a", "b"], "checkpoint has classes=")):
        bad = tmp_path / f"bad-{field}.pt"
        torch.save({**state, field: value}, bad)
        with pytest.raises(CheckpointError, match=expected):
            train_student(RunRequest.student_run(toy_dir, "S", "kd", teacher=bad, profile="smoke"),
                          RunOptions(run_dir=tmp_path / field, progress=False))
        assert not (tmp_path / field).exists()


def test_existing_run_is_not_overwritten(teacher_ckpt, toy_dir):
    with pytest.raises(TrainingError, match="already finished"):
        train_classifier(RunRequest.teacher_run(toy_dir, "S", profile="smoke"),
                         RunOptions(run_dir=teacher_ckpt.parent.parent, progress=False))


def test_the_teacher_cache_keeps_the_most_recently_used_files_within_its_bound(tmp_path):
    from ackd_bench.train.teacher_cache import _evict_beyond

    (tmp_path / "notes.pt").write_bytes(b"x" * 100)  # not the tool's pattern: never touched
    for age, name in enumerate(["c", "b", "a"]):  # a: the oldest use
        path = tmp_path / f"teacher-outputs-train-{name}.pt"
        path.write_bytes(b"x" * 100)
        os.utime(path, ns=(10**18 - age * 10**9, 10**18 - age * 10**9))
    newest = tmp_path / "teacher-outputs-train-c.pt"
    _evict_beyond(tmp_path, 250, keep=newest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pt", "teacher-outputs-train-b.pt", newest.name]
    _evict_beyond(tmp_path, 50, keep=newest)  # the one in use stays, whatever the bound
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pt", newest.name]
