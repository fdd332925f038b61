"""Runs and the board: nothing a user owns is overwritten, one writer per run, files readable by the lab."""

import json
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
def test_bad_training_lengths_and_rates_stop_before_a_run_directory_exists(mini_toy, tmp_path, flags, message, cli):
    run_dir = tmp_path / "run"
    _one_line(cli("train-teacher", str(mini_toy), "--arch", "S", "--profile", "smoke", "--out", str(run_dir),
                  "--quiet", *flags), message)
    assert not run_dir.exists()


def test_a_second_writer_of_a_run_stops_in_one_line_naming_the_first(mini_toy, tmp_path, cli):
    from filelock import FileLock

    run_dir = tmp_path / "run"
    lock = FileLock(str(tmp_path / ".run.lock"), timeout=0)
    lock.acquire()  # as a first writer holds it
    (tmp_path / ".run.owner.json").write_text(json.dumps({"pid": 4242, "host": "node7", "started": "2026-11-27T08:00"}))
    try:
        _one_line(run_cli("train-teacher", str(mini_toy), "--arch", "S", "--profile", "smoke", "--out", str(run_dir),
                          "--quiet"), f"{run_dir}: another process is writing this run (pid 4242 on node7, "
                                      "started 2026-11-27T08:00)", "--out")
        assert not run_dir.exists()
    finally:
        lock.release()
    # the first writer was killed: its owner file stays behind, the OS lock does not
    result = cli("train-teacher", str(mini_toy), "--arch", "S", "--profile", "smoke", "--epochs", "1",
                 "--out", str(run_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / ".run.owner.json").exists()


def test_two_identical_runs_started_together_write_one_log(mini_toy, tmp_path):
    args = [sys.executable, "-m", "ackd_bench.cli", "train-student", str(mini_toy), "--arch", "S", "--profile", "smoke",
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


# --- the board ---------------------------------------------------------------------------------

def _record(**changes):
    from ackd_bench.leaderboard.board import known_versions

    record = {"dataset": "toy", "dataset_version": next(iter(known_versions()["toy"])), "method": "kd",
              "kd_loss": "kd", "sembridge": False, "ablation": "", "teacher": "S", "student": "S", "seed": 0,
              "profile": "smoke", "epochs": 2, "oa": 0.9, "f1": 0.88, "val_oa": 0.91, "val_f1": 0.9, "n_test": 111,
              "config_hash": "a" * 64, "code_version": "0.1.0", "wall_seconds": 12.5, "device": "cpu"}
    return {**record, **changes}


def test_the_default_board_lives_outside_the_checkout(tmp_path, monkeypatch, cli):
    from ackd_bench.leaderboard.board import PUBLISHED_BOARD, default_board

    home = tmp_path / "home"
    monkeypatch.setenv("ACKD_BENCH_HOME", str(home))
    published = [PUBLISHED_BOARD, PUBLISHED_BOARD.with_name("README.md")]
    before = [p.read_bytes() if p.exists() else None for p in published]
    result_file = tmp_path / "r.json"
    result_file.write_text(json.dumps(_record()))
    # options before the files, as users type them
    result = cli("leaderboard", "submit", "--board", str(default_board()), str(result_file))
    assert result.returncode == 0, result.stderr
    result = cli("leaderboard", "submit", str(result_file.with_name("r2.json")))
    assert result.returncode == 2 and "r2.json: not found" in result.stderr
    assert (home / "leaderboard.csv").exists() and (home / "README.md").exists()
    assert [p.read_bytes() if p.exists() else None for p in published] == before


def test_one_experiment_has_one_name_and_settings_are_not_averaged():
    from ackd_bench.leaderboard.render import build_table, render
    from ackd_bench.results import Record, run_key

    a = Record.from_dict(_record(method="sembridge+kd", sembridge=True, seed=1))
    b = Record.from_dict(_record(method="sembridge", sembridge=True, seed=1))
    assert a.method == "sembridge" and run_key(a) == run_key(b)  # a duplicate under either name
    smoke = Record.from_dict(_record(seed=1, epochs=2, oa=0.50))
    longer = Record.from_dict(_record(seed=1, epochs=8, oa=0.90))
    demo = Record.from_dict(_record(seed=1, profile="demo", epochs=8, oa=0.70))
    assert len({run_key(r) for r in (smoke, longer, demo)}) == 3  # not duplicates of each other
    more = Record.from_dict(_record(seed=2, epochs=8, oa=0.80))
    text = render(build_table(4, [smoke, longer, demo, more], datasets=["toy"], with_paper=False, pairs=["S/S"]), "md")
    assert "85.0 ± 7.1" in text  # the two 8-epoch smoke runs only: (90 + 80) / 2


# --- one clear line for what a user can get wrong ------------------------------------------------

def test_ablate_without_sembridge_and_unknown_sweep_methods(mini_toy, tmp_path, cli):
    _one_line(cli("train-student", str(mini_toy), "--arch", "S", "--method", "none", "--ablate", "foo",
                  "--out", str(tmp_path / "r"), "--quiet"), "--ablate foo", "--method none")
    _one_line(cli("sweep", "--datasets", str(mini_toy), "--methods", "nope", "--runs-root", str(tmp_path)),
              "--methods nope: not in Tables 3-6")


def test_a_404_from_a_mirror_does_not_promise_a_resume(http_server, monkeypatch, tmp_path, cli):
    from ackd_bench.data.sources.fetch import MIRROR_ENV

    _served, url = http_server
    monkeypatch.setenv(MIRROR_ENV, url)
    result = cli("build", "s2s-eu", "--out", str(tmp_path / "x"), "--quiet")
    _one_line(result, f"{url}/EuroSATallBands.zip: HTTP 404", f"{MIRROR_ENV} is set to {url}", "--source-dir")
    assert "resume" not in result.stderr


@pytest.mark.parametrize("edit,fragment", [
    (lambda m: m.__setitem__("shards", "oops"), "field 'shards' is a str, expected a list"),
    (lambda m: m["modalities"]["rgb"].pop("mean"), "modalities.rgb lacks mean"),
])
def test_a_malformed_manifest_is_one_line_for_info_and_training(mini_toy, tmp_path, edit, fragment, cli):
    import shutil

    copy = shutil.copytree(mini_toy, tmp_path / "toy")
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    _one_line(cli("info", str(copy)), fragment)
    _one_line(cli("train-student", str(copy), "--arch", "S", "--profile", "smoke", "--out", str(tmp_path / "r"),
                  "--quiet"), fragment)


def test_unreadable_submissions_ledgers_and_plot_targets(mini_toy, tmp_path, cli):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("dataset,device\ntoy,caf\xe9\n".encode("latin-1"))
    _one_line(cli("leaderboard", "submit", str(latin), "--board", str(tmp_path / "b.csv")), f"{latin}: not UTF-8 text")
    ledger = tmp_path / "runs" / "sweeps" / "sweep.json"
    ledger.parent.mkdir(parents=True)
    ledger.write_text("{broken")
    _one_line(cli("sweep", "--datasets", str(mini_toy), "--methods", "none", "--pairs", "S/S", "--tables", "3",
                  "--runs-root", str(tmp_path / "runs")), f"{ledger}: not a readable sweep ledger")
    _one_line(cli("leaderboard", "plot", "--board", str(tmp_path / "b.csv"), "--out",
                  str(tmp_path / "missing" / "x.png")), "folder", "does not exist")
