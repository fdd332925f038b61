import json
import shutil
from collections import Counter

from ackd_bench.harness.grid import count_by_table, expand_grid
from ackd_bench.harness.sweep import Ledger, SweepConfig, run_sweep
from ackd_bench.leaderboard.board import read_board, submit
from ackd_bench.leaderboard.render import build_table, render
from ackd_bench.train.api import RunOptions


def test_grid_counts_per_table():
    assert count_by_table() == {3: 12, 4: 48, 5: 12, 6: 5}  # Table 6's full SemBridge row is Table 4's run
    grid = expand_grid(["d"], seeds=[0])
    kinds = Counter(r.kind for r in grid)
    # students: 3 alone + 7 baselines x 6 pairs + SemBridge(KD) x 6 + 5 SemBridge(+other) at R/R + 4 ablations
    assert kinds == {"student": 3 + 42 + 6 + 5 + 4, "teacher": 3, "matcher": 1}
    assert len(expand_grid(["a", "b"], seeds=[0, 1, 2])) == 6 * len(grid)
    ablations = expand_grid(["d"], tables=[6])
    # the four ablations and the full SemBridge run that Table 6's "all four" row compares them with
    assert sorted(r.ablation for r in ablations if r.kind == "student") == ["", "dynm", "ot1", "ot2", "ssm"]
    assert {(r.kind, r.teacher) for r in ablations if r.kind != "student"} == {("teacher", "R"), ("matcher", "")}
    only = expand_grid(["d"], methods=["kd"], pairs=["S/S", "M/S"], tables=[4])
    assert sorted((r.kind, r.teacher, r.student) for r in only) == [
        ("student", "M", "S"), ("student", "S", "S"), ("teacher", "M", ""), ("teacher", "S", "")]
    assert all(r.stage == 0 for r in only if r.kind == "teacher")


def test_local_sweep_skips_finished_and_retries_only_failed(toy_dir, tmp_path):
    missing = tmp_path / "toy-later"  # not built yet: its runs fail, the others go on
    requests = expand_grid([str(toy_dir), str(missing)], methods=["none"], pairs=["S/S"], tables=[3])
    config = SweepConfig(profile="smoke", student_overrides={"epochs": 1}, options=RunOptions(runs_root=tmp_path / "runs"))
    ledger = run_sweep(requests, config, name="t", progress=False)
    status = {r.dataset: ledger.entries[r.key]["status"] for r in requests}
    assert status == {str(toy_dir): "done", str(missing): "failed"}
    failed = next(e for e in ledger.entries.values() if e["status"] == "failed")
    assert "manifest.json" in failed["error"] or "not a directory" in failed["error"]
    done_dir = next(e["run_dir"] for e in ledger.entries.values() if e["status"] == "done")
    mtime = (tmp_path / done_dir / "result.json").stat().st_mtime_ns if not done_dir.startswith("/") else \
        __import__("pathlib").Path(done_dir, "result.json").stat().st_mtime_ns

    shutil.copytree(toy_dir, missing)
    again = run_sweep(requests, config, name="t", progress=False)
    assert all(e["status"] == "done" for e in again.entries.values())
    assert __import__("pathlib").Path(done_dir, "result.json").stat().st_mtime_ns == mtime  # not rerun
    assert Ledger(again.path).pending(requests) == []


def test_submitit_local_sweep_end_to_end_then_board(toy_dir, tmp_path):
    requests = expand_grid([str(toy_dir)], methods=["none", "kd"], pairs=["S/S", "M/S"], tables=[3, 4], seeds=[0])
    assert Counter(r.kind for r in requests) == {"student": 3, "teacher": 2}
    config = SweepConfig(profile="smoke", student_overrides={"epochs": 1}, teacher_overrides={"epochs": 1},
                         options=RunOptions(runs_root=tmp_path / "runs", device="cpu"))
    ledger = run_sweep(requests, config, launcher="submitit-local", name="s", slurm={"timeout_min": 20},
                       progress=False)
    assert [ledger.entries[r.key]["status"] for r in requests] == ["done"] * 5, ledger.entries
    results = [json.loads((tmp_path / "runs" / "x").parent.joinpath(e["run_dir"], "result.json").read_text())
               if not e["run_dir"].startswith("/") else json.loads(open(e["run_dir"] + "/result.json").read())
               for e in ledger.entries.values()]
    assert sorted(r["method"] for r in results) == ["kd", "kd", "none", "teacher", "teacher"]
    board = tmp_path / "board.csv"
    assert submit([e["run_dir"] for e in ledger.entries.values()], board) == 5
    text = render(build_table(4, read_board(board)), "md")
    assert "toy S/S" in text and "toy M/S" in text and "s2s-eu R/R" in text and "Vanilla KD [paper]" in text


def test_demo_runs_the_main_job_on_toy(demo_run):
    _data, runs, text, out = demo_run
    assert "[1/3] toy benchmark" in out and "[3/3] results" in out and "seeds 0-1, mean ± std" in out
    for row in ("S/S  T:ShuffleNetV2", "S/S  S:ShuffleNetV2", "S/S  +SemBridge", "Vanilla KD (naive pairing)"):
        assert row in text
    assert "(n=2)" in text and "(n=1)" in text  # students over 2 seeds; the one teacher
    assert text.splitlines()[-1].startswith("Noise (2 seeds): SemBridge - none ")
    # one teacher and one matcher, trained once; three students per seed
    names = sorted(p.parent.name.rsplit("-", 1)[0] for p in (runs / "toy").glob("*/result.json"))
    assert names == ["matcher-S-s0", "student-S-kd-TS-s0", "student-S-kd-TS-s1", "student-S-none-s0",
                     "student-S-none-s1", "student-S-sembridge-TS-s0", "student-S-sembridge-TS-s1", "teacher-S-s0"]


def test_readme_flow_demo_then_smoke_runs_then_submit_and_show(demo_run, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("ACKD_BENCH_HOME", str(tmp_path / "home"))
    data, demo_runs, _text, _out = demo_run
    runs = shutil.copytree(demo_runs, tmp_path / "runs")  # the smoke run below joins the demo's
    smoke = cli("train-student", str(data / "toy"), "--arch", "S", "--profile", "smoke",
                "--epochs", "1", "--runs-root", str(runs), "--quiet")
    assert smoke.returncode == 0, smoke.stderr
    results = sorted(str(p) for p in runs.glob("toy/*/result.json"))
    submitted = cli("leaderboard", "submit", *results)
    assert submitted.returncode == 0, submitted.stderr
    assert f"{len([r for r in results if 'matcher' not in r])} row(s) added" in submitted.stdout
    shown = cli("leaderboard", "show", "--table", "3", "--dataset", "toy", "--no-paper")
    assert shown.returncode == 0 and "S/S  +SemBridge" in shown.stdout


def test_the_demos_noise_line_by_hand():
    from ackd_bench.harness.demo import noise_line

    # OA in points: KD 68.0 ± 2.8, SemBridge 63.0 ± 1.4, none 62.0 ± 2.8
    line = noise_line({"kd": [0.70, 0.66], "sembridge": [0.64, 0.62], "none": [0.60, 0.64]})
    assert line == ("Noise (2 seeds): SemBridge - none +1.0, SemBridge - KD -5.0 (beyond noise), KD - none +6.0 "
                    "(beyond noise) points of OA; the rest within noise (within noise: smaller than the larger of "
                    "the two methods' std over seeds).")
    assert "all within noise" in noise_line({"kd": [0.6, 0.7], "sembridge": [0.62, 0.66], "none": [0.64, 0.60]})
    one = noise_line({"kd": [0.7], "sembridge": [0.6], "none": [0.5]})
    assert one == ("Noise (1 seed): SemBridge - none +10.0, SemBridge - KD -10.0, KD - none +20.0 points of OA; "
                   "one seed has no std, so no difference can be told from noise.")


def test_the_demo_wants_at_least_one_seed(cli, tmp_path):
    result = cli("demo", "--root", str(tmp_path / "data"), "--seeds", "0", "--quiet")
    assert result.returncode == 2 and result.stderr.strip() == "ackd-bench: error: --seeds 0: expected at least 1 student seed"
    assert not (tmp_path / "data").exists()  # refused before building anything
