import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from ackd_bench.harness.grid import count_by_table, expand_grid
from ackd_bench.harness.plan import RunPlan
from ackd_bench.harness.runner import Ledger
from ackd_bench.harness.sweep import run_sweep
from ackd_bench.leaderboard.board import default_board, read_board, submit
from ackd_bench.leaderboard.render import build_table, render
from ackd_bench.results import read_result
from ackd_bench.train.api import RunOptions

from .conftest import versions_accepting


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


def test_local_sweep_skips_finished_and_retries_only_failed(mini_toy, tmp_path):
    missing = tmp_path / "toy-later"  # not built yet: its runs fail, the others go on
    requests = expand_grid([str(mini_toy), str(missing)], methods=["none"], pairs=["S/S"], tables=[3])
    config = RunPlan(profile="smoke", student_overrides={"epochs": 1}, options=RunOptions(runs_root=tmp_path / "runs"))
    ledger = run_sweep(requests, config, name="t", progress=False)
    status = {r.dataset: ledger.entries[r.key]["status"] for r in requests}
    assert status == {str(mini_toy): "done", str(missing): "failed"}
    failed = next(e for e in ledger.entries.values() if e["status"] == "failed")
    assert "manifest.json" in failed["error"] or "not a directory" in failed["error"]
    done_dir = next(e["run_dir"] for e in ledger.entries.values() if e["status"] == "done")
    mtime = (tmp_path / done_dir / "result.json").stat().st_mtime_ns if not done_dir.startswith("/") else \
        __import__("pathlib").Path(done_dir, "result.json").stat().st_mtime_ns

    shutil.copytree(mini_toy, missing)
    again = run_sweep(requests, config, name="t", progress=False)
    assert all(e["status"] == "done" for e in again.entries.values())
    assert __import__("pathlib").Path(done_dir, "result.json").stat().st_mtime_ns == mtime  # not rerun
    assert Ledger(again.path).pending(requests) == []


def test_a_grid_goes_to_the_board_its_readme_plot_and_site(mini_toy, tmp_path):
    """The toy grid's path in small: Table 4 on two pairs, two methods, one seed, swept through
    submitit, submitted, and shown with its paired comparisons, plot and site."""
    requests = expand_grid([str(mini_toy)], methods=["kd", "sembridge"], pairs=["S/S", "M/S"], tables=[4], seeds=[0])
    assert Counter(r.kind for r in requests) == {"student": 4, "teacher": 2, "matcher": 1}
    config = RunPlan(profile="smoke", student_overrides={"epochs": 1}, teacher_overrides={"epochs": 1},
                     matcher_overrides={"epochs": 1}, matcher_arch="S",
                     options=RunOptions(runs_root=tmp_path / "runs", device="cpu"))
    ledger = run_sweep(requests, config, launcher="submitit-local", name="s", slurm={"timeout_min": 20},
                       progress=False)
    assert [ledger.entries[r.key]["status"] for r in requests] == ["done"] * 7, ledger.entries
    runs = [e["run_dir"] for e in ledger.entries.values() if e["kind"] != "matcher"]
    results = {(r.method, r.teacher, r.student): r for r in map(read_result, runs)}
    assert sorted(results) == [("kd", "M", "S"), ("kd", "S", "S"), ("sembridge", "M", "S"), ("sembridge", "S", "S"),
                               ("teacher", "M", None), ("teacher", "S", None)]

    board = tmp_path / "board.csv"
    versions = versions_accepting(mini_toy, tmp_path / "versions.csv")
    assert submit(runs, board, versions_file=versions, readme=True) == 6
    readme = (tmp_path / "board.md").read_text()
    table_4 = readme.split("**Table 4**")[1].split("**Table 5**")[0]
    row = next(line for line in table_4.splitlines() if line.startswith("| +SemBridge (smoke profile) |"))
    cells = row.split(" | ")  # method, toy R/R, M/M, S/S, R/M, R/S, M/S, Avg., then the paper's datasets
    assert cells[3] == f"{100 * results['sembridge', 'S', 'S'].oa:.1f} (n=1)"
    assert cells[6] == f"{100 * results['sembridge', 'M', 'S'].oa:.1f} (n=1)"
    # Table 4's question per cell, paired by seed and test item from the board's kept predictions
    paired = readme.split("**Table 4: SemBridge against each distillation loss")[1].split("**Table 5")[0]
    n_test = results["kd", "S", "S"].n_test
    for pair in ("S/S", "M/S"):
        line = next(x for x in paired.splitlines() if x.startswith(f"| sembridge - kd | toy | {pair} |"))
        difference = 100 * (results["sembridge", pair[0], "S"].oa - results["kd", pair[0], "S"].oa)
        assert f"| 1 seeds x {n_test} items | {difference:+.1f} [" in line and "(detectable: " in line
    verdict = next(x for x in paired.splitlines() if x.startswith("OA: "))
    assert ("differences is real" in verdict or "differences are real" in verdict) and "one seed" in verdict
    assert "These designs detect " in verdict

    from ackd_bench.leaderboard.plot import oa_bars, plot_oa
    from ackd_bench.leaderboard.site import write_site

    bars = {b.label: b for b in oa_bars(read_board(board), "toy")}
    assert sorted(bars) == ["+SemBridge", "Vanilla KD"]
    assert bars["Vanilla KD"].means[5] == 100 * results["kd", "M", "S"].oa  # PAIRS[5] is M/S
    assert bars["Vanilla KD"].seeds == (0, 0, 1, 0, 0, 1) and bars["Vanilla KD"].half_widths[2] == 0.0
    assert plot_oa(read_board(board), tmp_path / "oa.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = write_site(read_board(board), tmp_path / "site", store=tmp_path / "predictions").read_text()
    assert 'id="toy-table-4"' in page and 'id="paired-table-4"' in page and "data:image/png;base64," in page
    assert page.count("<td>sembridge - kd</td>") == 2


def test_demo_runs_the_main_job_on_toy(demo_run):
    _data, runs, text, out = demo_run
    assert "[1/3] toy benchmark" in out and "[3/3] results" in out and "seeds 0-1, mean ± std" in out
    for row in ("S/S  T:ShuffleNetV2", "S/S  S:ShuffleNetV2", "S/S  +SemBridge", "Vanilla KD (naive pairing)"):
        assert row in text
    assert "(n=2)" in text and "(n=1)" in text  # students over 2 seeds; the one teacher
    n_test = read_result(next((runs / "toy").glob("student-S-none-s0-*"))).n_test
    verdict = text.split(f"Paired OA differences in points (2 seeds x {n_test} test images")[1].splitlines()
    for line, pair in zip(verdict[1:4], ("SemBridge - none", "SemBridge - KD", "KD - none")):
        assert line.startswith(f"  {pair} ") and "(detectable: " in line
        assert line.endswith(": real") or line.endswith(": not resolved")
    # every run folder holds the per-item predictions its result names
    from ackd_bench.predictions import read_predictions

    for folder in (runs / "toy").glob("*-s[01]-*"):
        if (folder / "result.json").is_file() and not folder.name.startswith("matcher"):
            kept = read_predictions(folder / "predictions.npz", read_result(folder).predictions_sha256)
            assert len(kept.item_ids) == read_result(folder).n_test
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
    results = sorted(str(p) for p in runs.glob("toy/*/result.json") if not p.parent.name.startswith("matcher"))
    # the mini toy is not a registered version: the board here accepts it too
    versions = versions_accepting(data / "toy", tmp_path / "versions.csv")
    assert submit(results, default_board(), versions_file=versions) == len(results)
    shown = cli("leaderboard", "show", "--table", "3", "--dataset", "toy", "--no-paper")
    assert shown.returncode == 0 and "S/S  +SemBridge" in shown.stdout


def test_the_demos_verdict_is_the_paired_comparison_of_its_runs(tmp_path):
    from ackd_bench.harness.demo import verdict_lines
    from ackd_bench.leaderboard.paired import Run, compare
    from ackd_bench.results import Record

    from .test_paired import _write_run, synthetic_runs

    rng = np.random.default_rng(9)
    strong, weak = synthetic_runs(rng, 0.10, seeds=4, items=500, seed_sd=0.0)
    _, same = synthetic_runs(rng, 0.0, seeds=4, items=500, seed_sd=0.0)
    for method, runs in (("sembridge", strong), ("kd", weak), ("none", same)):
        for seed, predictions in enumerate(runs):
            _write_run(tmp_path / f"{method}-{seed}", method, seed, predictions)
    runs = [Run.in_folder(Record.from_dict(json.loads((f / "result.json").read_text())), f)
            for f in sorted(tmp_path.iterdir())]
    lines = verdict_lines(runs)
    assert lines[0].startswith("Paired OA differences in points (4 seeds x 500 test images")
    for line, (a, b) in zip(lines[1:4], (("sembridge", "none"), ("sembridge", "kd"), ("kd", "none"))):
        estimate = compare([r for r in runs if r.record.method == a], [r for r in runs if r.record.method == b],
                           a, b, {}).estimates["oa"]
        assert estimate.text() in line
        assert line.endswith(": real" if estimate.resolved else ": not resolved")
    # 10 planted points against 0: real; the same method's twin: within its interval
    assert lines[2].endswith(": real")
    # one seed measures test items but not training: nothing is called real
    first_seed = [r for r in runs if r.record.seed == 0]
    assert all(line.endswith("one seed measures no training variance, so no difference can be called real; run "
                             "--seeds 2 or more") for line in verdict_lines(first_seed)[1:4])


def test_the_demo_wants_at_least_one_seed(cli, tmp_path):
    result = cli("demo", "--root", str(tmp_path / "data"), "--seeds", "0", "--quiet")
    assert result.returncode == 2 and result.stderr.strip() == "ackd-bench: error: --seeds 0: expected at least 1 student seed"
    assert not (tmp_path / "data").exists()  # refused before building anything


def test_a_sweep_replays_from_its_plan(mini_toy, tmp_path, cli):
    """#36: every sweep writes its plan beside its ledger, and `sweep --replay PLAN` runs exactly that
    again: in a fresh runs root the same runs with the same config hashes and results, where they
    are done nothing, and a plan's own fields never choose where the runs are written."""
    args = ["sweep", "--datasets", str(mini_toy), "--methods", "teacher", "none", "--pairs", "S/S", "--tables", "3",
            "--seeds", "0", "--epochs", "1", "--teacher-epochs", "1", "--profile", "smoke", "--device", "cpu",
            "--runs-root", str(tmp_path / "first"), "--name", "grid", "--quiet"]
    assert cli(*args).returncode == 0
    plan = tmp_path / "first" / "sweeps" / "grid.sweep.json"
    written = json.loads(plan.read_text())
    assert [r["kind"] for r in written["runs"]] == ["teacher", "student"] and written["config"]["profile"]["name"] == "smoke"
    copy = tmp_path / "second" / "sweeps" / "grid.sweep.json"
    copy.parent.mkdir(parents=True)
    written["config"]["options"]["device"] = "cpu"
    for crafted, message in (({**written, "runs_root": "/elsewhere"}, "unknown field(s) runs_root"),
                             ({**written, "name": "../x"}, "field 'name' '../x': expected a plain name"),
                             ({**written, "name": "other"}, "a plan of sweep 'other' lies at <runs root>/sweeps/"),
                             ({**written, "runs": [{**written["runs"][0], "seed": 2**70}]}, "runs[0]: seed must be"),
                             ({**written, "launcher": "bash"}, "field 'launcher' is 'bash'"),
                             ({**written, "runs": [{**written["runs"][0], "dataset": str(tmp_path / "s2s-eu")}]},
                              f"the plan's dataset {tmp_path / 's2s-eu'} is not built here; build it there first"),
                             # toy is built only under the data root: a plan never chooses where to write
                             ({**written, "runs": [{**written["runs"][0], "dataset": str(tmp_path / "far" / "toy")}]},
                              f"the plan's dataset {tmp_path / 'far' / 'toy'} is not built here")):
        copy.write_text(json.dumps(crafted))
        refused = cli("sweep", "--replay", str(copy), "--quiet")
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert refused.stderr.startswith(f"ackd-bench: error: {copy}: ") and message in refused.stderr, refused.stderr
    assert not (tmp_path / "far").exists()
    copy.write_text(json.dumps(written))
    assert cli("sweep", "--replay", str(copy), "--quiet").returncode == 0

    def results(root):
        ledger = json.loads((root / "sweeps" / "grid.json").read_text())
        return {key: {k: v for k, v in json.loads((Path(e["run_dir"]) / "result.json").read_text()).items()
                      if k in ("config_hash", "oa", "f1", "seed", "method")} for key, e in ledger.items()}

    first, second = results(tmp_path / "first"), results(tmp_path / "second")
    assert first == second and len(first) == 2
    assert all(str(tmp_path / "second") in e["run_dir"]
               for e in json.loads((tmp_path / "second" / "sweeps" / "grid.json").read_text()).values())
    again = cli("sweep", "--replay", str(copy))
    assert again.returncode == 0 and "2/2 runs done" in again.stdout
