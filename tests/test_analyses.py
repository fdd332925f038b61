import csv
import json
import math

import numpy as np
import pytest

from ackd_bench.cli import main
from ackd_bench.data.mi import image_mi, quantise
from ackd_bench.train.api import RunOptions, train_student
from ackd_bench.train.request import RunRequest
from ackd_bench.train.transport import wasserstein


def test_quantise_gives_equal_frequency_codes():
    codes = quantise(np.arange(16.0).reshape(4, 4), bins=4)
    assert codes.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert quantise(np.arange(16.0).reshape(4, 4) ** 3, 4).tolist() == codes.tolist()  # monotone-invariant


def test_mi_against_a_hand_computed_joint_histogram():
    a = np.array([[0.0, 1.0], [2.0, 3.0]])  # codes with 2 bins: 0 0 1 1
    b = np.array([[0.0, 3.0], [1.0, 2.0]])  # codes with 2 bins: 0 1 0 1
    # joint histogram: each of (0,0) (0,1) (1,0) (1,1) once -> independent -> MI 0
    assert image_mi(a, b, bins=2) == pytest.approx(0.0, abs=1e-12)
    # identical codes 0 0 1 1: p(x,y) = 1/2 on the diagonal -> MI = ln 2
    assert image_mi(a, a, bins=2) == pytest.approx(math.log(2))
    c = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])  # 2 bins: 0 0 0 1 1 1
    d = np.array([[0.0, 1.0, 3.0], [2.0, 4.0, 5.0]])  # 2 bins: 0 0 1 0 1 1
    # joint: (0,0) 2/6, (0,1) 1/6, (1,0) 1/6, (1,1) 2/6; marginals 1/2 each
    expected = 2 * (2 / 6) * math.log((2 / 6) / 0.25) + 2 * (1 / 6) * math.log((1 / 6) / 0.25)
    assert image_mi(c, d, bins=2) == pytest.approx(expected)


def test_self_mi_exceeds_mi_with_an_independent_image_and_the_floor_is_small():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 48, 48)), rng.normal(size=(3, 48, 48))
    assert image_mi(x, x) > 10 * image_mi(x, y)
    independent = [image_mi(rng.normal(size=(48, 48)), rng.normal(size=(48, 48)), 16) for _ in range(20)]
    bias = (16 - 1) ** 2 / (2 * 48 * 48)  # Miller-Madow bias of the plug-in estimate
    assert abs(np.mean(independent) - bias) < 0.02


def test_mi_on_toy_paired_control_beats_unpaired(toy_dir, tmp_path, capsys):
    import shutil

    toy_dir = shutil.copytree(toy_dir, tmp_path / "toy")  # the analysis rewrites the manifest and card
    manifest_before = (toy_dir / "manifest.json").read_bytes()
    assert main(["mi", str(toy_dir), "--pairs", "20", "--bins", "8", "--out", str(tmp_path)]) == 0
    assert "paired control" in capsys.readouterr().out
    # --out X writes into X only (round four, class 8): the dataset's manifest and card stay as they were
    assert (toy_dir / "manifest.json").read_bytes() == manifest_before
    assert main(["mi", str(toy_dir), "--pairs", "20", "--bins", "8"]) == 0
    capsys.readouterr()
    shutil.copy(toy_dir / "analysis" / "mi.csv", tmp_path / "mi.csv")
    with open(tmp_path / "mi.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["class"] for r in rows] == json.loads((toy_dir / "manifest.json").read_text())["classes"]
    for row in rows:
        assert float(row["mi_paired"]) > 3 * float(row["mi_unpaired"])
        assert abs(float(row["mi_unpaired"]) - float(row["mi_permutation"])) < 0.05
    assert (tmp_path / "mi.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((toy_dir / "manifest.json").read_text())
    assert manifest["analyses"]["mi"]["bins"] == 8 and manifest["analyses"]["mi"]["pairs_per_class"] == 20
    assert "Within-class mutual information" in (toy_dir / "DATASET.md").read_text()


def test_mi_refuses_more_pairs_than_a_class_has(toy_dir, capsys):
    assert main(["mi", str(toy_dir), "--pairs", "5000"]) == 2
    assert "fewer than --pairs 5000" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [("--pairs", "-3", "--pairs -3: expected a whole number from 1"),
                                                    ("--bins", "0", "--bins 0: expected a whole number from 2 to 256"),
                                                    ("--bins", "1", "--bins 1: expected a whole number from 2"),
                                                    ("--seed", "-1", "--seed -1: expected a whole number from 0")])
def test_mi_settings_out_of_range_are_one_line_before_anything_is_written(toy_dir, tmp_path, capsys, option, value,
                                                                        message):
    """Round four: `mi --pairs -3` ended in a traceback and `mi --bins 0` wrote its meaningless result into
    the manifest."""
    before = (toy_dir / "manifest.json").read_bytes()
    assert main(["mi", str(toy_dir), option, value, "--out", str(tmp_path / "mi")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"ackd-bench: error: {message}" or (message in err and err.count("\n") == 1)
    assert (toy_dir / "manifest.json").read_bytes() == before and not (tmp_path / "mi").exists()


def test_a_negative_seed_is_one_line(mini_toy, tmp_path, cli):
    done = cli("train-teacher", str(mini_toy), "--arch", "S", "--profile", "smoke", "--seed", "-1", "--out",
               str(tmp_path / "run"), "--device", "cpu", "--quiet")
    assert done.returncode == 2 and done.stderr.strip() == ("ackd-bench: error: --seed -1: expected a whole number "
                                                            "from 0 to 2**32 - 1")
    assert not (tmp_path / "run").exists()


def test_wasserstein_properties():
    x = np.random.default_rng(1).normal(size=50)
    assert wasserstein(x, x) == pytest.approx(0.0)
    assert wasserstein(x, x + 2.5) == pytest.approx(2.5)  # a shift moves every point by 2.5
    a, b = np.random.default_rng(2).normal(size=(30, 4)), np.random.default_rng(3).normal(size=(30, 4)) + 1
    assert wasserstein(a, b) == pytest.approx(wasserstein(b, a))
    assert wasserstein(np.array([0.0, 1.0]), np.array([3.0, 5.0])) == pytest.approx((3 + 4) / 2)
    with pytest.raises(ValueError, match="equal-size"):
        wasserstein(a, b[:5])


def test_transport_cost_from_two_checkpoints_and_logged_curve(toy_dir, teacher_ckpt, tmp_path, capsys):
    run = train_student(RunRequest.student_run(toy_dir, "S", "kd", teacher=teacher_ckpt, profile="smoke"),
                        RunOptions(run_dir=tmp_path / "kd", progress=False, log_transport_cost=True))
    student_ckpt = tmp_path / "kd" / "checkpoints" / "best.pt"
    assert main(["transport-cost", str(toy_dir), "--teacher", str(teacher_ckpt), "--student", str(student_ckpt)]) == 0
    out = capsys.readouterr().out
    assert "asymmetric (ACKD)" in out and "symmetric control (SCKD)" in out
    header = (tmp_path / "kd" / "log.csv").read_text().splitlines()[0]
    assert "val_transport_asymmetric" in header and "val_transport_symmetric" in header
    assert main(["transport-cost", "--plot", run["run_dir"], "--out", str(tmp_path / "w.png")]) == 0
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"
    # a teacher checkpoint where a student belongs is refused
    assert main(["transport-cost", str(toy_dir), "--teacher", str(teacher_ckpt), "--student", str(teacher_ckpt)]) == 2
    assert "checkpoint has kind='teacher', expected 'student'" in capsys.readouterr().err
