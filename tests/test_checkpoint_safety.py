"""Checkpoints are data: loading one never runs code from it."""

import pickle

import numpy as np
import pytest
import torch

from ackd_bench.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ackd_bench.train.request import RunRequest


class Payload:
    """What an attacker hides in a shared teacher: unpickling it calls open(marker, "w")."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_crafted_teacher_is_refused_before_it_can_run_code(mini_teacher, mini_toy, tmp_path, cli):
    marker = tmp_path / "payload-ran"
    state = torch.load(mini_teacher, map_location="cpu", weights_only=True)
    evil = tmp_path / "evil.pt"
    torch.save({**state, "note": Payload(marker)}, evil)
    result = cli("train-student", str(mini_toy), "--arch", "S", "--method", "kd", "--teacher", str(evil),
                 "--profile", "smoke", "--out", str(tmp_path / "run"), "--quiet")
    assert not marker.exists(), "loading the checkpoint ran its payload"
    assert result.returncode == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert f"{evil}: refused: it holds io.open" in line and "could run code" in line
    assert not (tmp_path / "run").exists()


def test_a_pickled_object_of_any_class_is_refused(tmp_path):
    path = tmp_path / "obj.pt"
    with open(path, "wb") as handle:  # a plain pickle, not even a torch zip file
        pickle.dump({"module": Payload(tmp_path / "x")}, handle)
    with pytest.raises(CheckpointError, match=r"obj.pt: not a checkpoint written by torch.save \(not a zip archive"):
        load_checkpoint(path)
    assert not (tmp_path / "x").exists()


def _rezipped(source, target, compress=None, member_edit=None):
    """`source`'s members in a new zip at `target`, each optionally compressed or rewritten."""
    import zipfile

    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            data = old.read(info)
            if member_edit:
                data = member_edit(info.filename, data)
            new.writestr(info.filename, data, compress_type=compress or zipfile.ZIP_STORED)
    return target


def test_a_checkpoint_that_inflates_is_refused_before_torch_reads_it(tmp_path):
    """Round four, class 5: a 10 MB checkpoint holding a compressed 3 GB storage was inflated before any
    size check (here 64 MB of zeros deflate to about 64 KB)."""
    import zipfile

    plain = tmp_path / "plain.pt"
    torch.save({"module": {"w": torch.zeros(16 * 2**20)}}, plain)
    packed = _rezipped(plain, tmp_path / "packed.pt", compress=zipfile.ZIP_DEFLATED)
    assert packed.stat().st_size < 2**20
    with pytest.raises(CheckpointError, match=r"packed.pt: member '.*' is compressed; torch.save stores members"):
        load_checkpoint(packed)
    # a stored member whose header declares more than the file holds (a zip's sizes are its own claims)
    lying = tmp_path / "lying.pt"
    lying.write_bytes(plain.read_bytes()[: plain.stat().st_size // 2] + plain.read_bytes()[-4096:])
    with pytest.raises(CheckpointError, match=r"lying.pt: "):
        load_checkpoint(lying)
    assert load_checkpoint(plain)["module"]["w"].numel() == 16 * 2**20


def test_checkpoint_metadata_nested_without_end_is_one_line(tmp_path, cli, mini_toy):
    """Round four, class 7: a checkpoint's nested metadata ended in RecursionError; a `module` that is
    not a mapping in an AttributeError."""
    deep = []
    for _ in range(400):  # torch.save itself recurses per level
        deep = [deep]
    path = tmp_path / "deep.pt"
    torch.save({"kind": "teacher", "note": deep}, path)
    with pytest.raises(CheckpointError, match=r"deep.pt: .*nested deeper than 64 levels"):
        load_checkpoint(path)
    not_a_mapping = tmp_path / "module.pt"
    torch.save({"kind": "teacher", "arch": "S", "in_channels": 13, "num_classes": 6, "module": [1, 2],
                "bands": [f"B{i}" for i in range(13)]}, not_a_mapping)
    result = cli("train-student", str(mini_toy), "--arch", "S", "--method", "kd", "--teacher", str(not_a_mapping),
                 "--profile", "smoke", "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "module.pt: " in result.stderr and "Traceback" not in result.stderr


def test_a_full_disk_under_torch_save_is_one_line_and_leaves_no_file(tmp_path):
    """Round four, class 7: torch.save on a full disk raised its zip writer's RuntimeError. A file-size
    limit fails the same write (EFBIG where a full disk gives ENOSPC)."""
    import subprocess
    import sys

    script = f"""
import resource, signal, sys
from ackd_bench.cli import main
from ackd_bench.errors import failure_line
from ackd_bench.train.checkpoint import save_checkpoint
import torch
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
try:
    save_checkpoint({str(tmp_path / "big.pt")!r}, {{"w": torch.zeros(2**20)}})
except Exception as exc:
    print(failure_line(exc)[0])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    line = done.stdout.strip()
    assert line.startswith(f"ackd-bench: error: {tmp_path / 'big.pt'}: could not be written"), (line, done.stderr)
    assert list(tmp_path.iterdir()) == []


def test_checkpoints_hold_tensors_and_plain_values_only(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"pairs": np.arange(4), "score": np.float64(0.5), "rng": ("MT19937", np.zeros(3, np.uint32))})
    state = torch.load(path, weights_only=True)  # torch's own data-only loader, no allow-list
    assert torch.equal(state["pairs"], torch.arange(4)) and state["score"] == 0.5 and type(state["score"]) is float
    assert isinstance(state["rng"], tuple) and torch.equal(state["rng"][1], torch.zeros(3, dtype=torch.uint32))


def test_older_checkpoints_with_numpy_arrays_still_load(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"task_state": {"pairing": {"pairs": np.arange(5)}}, "rng": {"numpy": np.random.get_state()}}, path)
    state = load_checkpoint(path)
    assert (state["task_state"]["pairing"]["pairs"] == np.arange(5)).all()


def test_a_real_runs_checkpoints_load_with_torchs_plain_weights_only_loader(mini_toy, tmp_path):
    from ackd_bench.train.api import RunOptions, train_classifier, train_student

    teacher = tmp_path / "t"
    train_classifier(RunRequest.teacher_run(mini_toy, "S", profile="smoke", overrides={"epochs": 1}),
                     RunOptions(run_dir=teacher, progress=False))
    train_student(RunRequest.student_run(mini_toy, "S", "sembridge", ablation="ssm",
                                         teacher=teacher / "checkpoints" / "best.pt", profile="smoke",
                                         overrides={"epochs": 1}),
                  RunOptions(run_dir=tmp_path / "s", progress=False))
    for path in (teacher / "checkpoints" / "last.pt", tmp_path / "s" / "checkpoints" / "last.pt",
                 tmp_path / "s" / "checkpoints" / "best.pt"):
        state = torch.load(path, weights_only=True)  # no allow-list: tensors and plain values only
        assert "module" in state
    pairs = torch.load(tmp_path / "s" / "checkpoints" / "last.pt", weights_only=True)["task_state"]["pairing"]["pairs"]
    assert isinstance(pairs, torch.Tensor) and pairs.dtype == torch.int64


def test_a_teacher_of_another_architecture_is_one_line_and_leaves_nothing(mini_teacher, mini_toy, tmp_path, cli):
    state = torch.load(mini_teacher, map_location="cpu", weights_only=True)
    wrong = tmp_path / "wrong.pt"
    torch.save({**state, "arch": "mobilenetv2"}, wrong)  # ShuffleNetV2 weights labelled MobileNetV2
    result = cli("train-student", str(mini_toy), "--arch", "S", "--method", "kd", "--teacher", str(wrong),
                 "--profile", "smoke", "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"{wrong}: its weights do not fit a mobilenetv2 teacher with 10 bands and 6 classes" in result.stderr
    assert "another architecture or band count?" in result.stderr
    assert not (tmp_path / "run").exists()
    bare = tmp_path / "bare.pt"
    torch.save({k: v for k, v in state.items() if k != "arch"}, bare)
    result = cli("train-student", str(mini_toy), "--arch", "S", "--method", "kd", "--teacher", str(bare),
                 "--profile", "smoke", "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 2 and f"{bare}: not an ackd-bench model checkpoint (no arch)" in result.stderr
