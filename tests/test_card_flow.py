"""The design card's flow as written: `ackd-bench eval --method sembridge` with no dataset and no
profile, `--dataset NAME|PATH`, and `ackd-bench leaderboard submit` with no files."""

from __future__ import annotations

import json

import pytest

from ackd_bench.cli import main
from ackd_bench.data.locate import choose_dataset
from ackd_bench.errors import AckdError
from ackd_bench.leaderboard.board import known_versions, read_board, submit_runs

from .test_leaderboard import _record


def _root_with(tmp_path, **datasets):
    root = tmp_path / "data"
    root.mkdir()
    for name, target in datasets.items():
        (root / name).symlink_to(target, target_is_directory=True)
    return root


def test_the_only_built_benchmark_is_chosen_and_several_are_never_guessed(tmp_path, toy_dir, mini_toy):
    one = _root_with(tmp_path, toy=toy_dir)
    chosen = choose_dataset(None, one)
    assert (chosen.path, chosen.name, chosen.default_profile()) == (one / "toy", "toy", "demo")
    assert chosen.how == f"the only benchmark built under {one}/"
    (one / "notes").mkdir()  # a folder without a manifest is not a benchmark
    assert choose_dataset(None, one).path == one / "toy"

    (one / "toy-small").symlink_to(mini_toy, target_is_directory=True)
    with pytest.raises(AckdError) as error:
        choose_dataset(None, one)
    assert str(error.value) == f"2 benchmarks are built under {one}/ (toy, toy-small): choose one with --dataset NAME"
    assert choose_dataset("toy", one).path == one / "toy"  # by name, under the root
    assert choose_dataset(str(mini_toy), one).path == mini_toy  # by folder, anywhere


def test_names_not_built_and_folders_not_built_are_one_line(tmp_path, toy_dir):
    root = _root_with(tmp_path, toy=toy_dir)
    with pytest.raises(AckdError, match=r"^s2s-cn is not built under .*/data/: run `ackd-bench build s2s-cn` first"):
        choose_dataset("s2s-cn", root)
    with pytest.raises(AckdError, match=r"^--dataset eurosat: neither a built dataset's folder nor a benchmark name "
                                        r"\(.*s2s-eu.*\)$"):
        choose_dataset("eurosat", root)
    with pytest.raises(AckdError, match=r"notes: not a built dataset \(no manifest.json\)"):
        (tmp_path / "notes").mkdir()
        choose_dataset(str(tmp_path / "notes"), root)


def test_with_nothing_built_toy_is_built_on_the_spot(tmp_path):
    chosen = choose_dataset(None, tmp_path / "empty")
    assert chosen.path == tmp_path / "empty" / "toy" and (chosen.path / "manifest.json").is_file()
    assert chosen.how == f"built under {tmp_path / 'empty'}/"
    assert choose_dataset(None, tmp_path / "empty").how == f"the only benchmark built under {tmp_path / 'empty'}/"


def test_a_run_with_no_dataset_and_no_profile_says_what_it_chose(tmp_path, mini_toy, monkeypatch, capsys):
    root = _root_with(tmp_path, toy=mini_toy)
    monkeypatch.setenv("ACKD_BENCH_DATA", str(root))
    runs = tmp_path / "runs"
    assert main(["train-teacher", "--arch", "S", "--epochs", "1", "--runs-root", str(runs), "--device", "cpu",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ackd-bench: dataset toy ({root / 'toy'}, the only benchmark built under {root}/); "
                          "profile demo (the default on toy; --profile to choose another)\n")
    result = json.loads(next(runs.rglob("result.json")).read_text())
    assert (result["profile"], result["epochs"]) == ("demo", 1)

    # given explicitly, nothing is said about the dataset; two different ones are refused
    assert main(["sweep", "--dataset", str(mini_toy), "--profile", "smoke", "--dry-run", "--methods", "none",
                 "--pairs", "S/S", "--seeds", "0", "--tables", "3"]) == 0
    assert capsys.readouterr().out == f"stage 1  {mini_toy}  student:none S seed 0\n1 runs\n"
    assert main(["train-teacher", str(mini_toy), "--dataset", "toy"]) == 2
    assert "two datasets given" in capsys.readouterr().err


def test_submit_with_no_files_adds_what_the_board_does_not_hold(tmp_path, capsys):
    runs, board = tmp_path / "runs", tmp_path / "board" / "leaderboard.csv"
    for i, record in enumerate([_record(seed=0), _record(seed=1), {"kind": "matcher", "val_top1": 0.5}]):
        run = runs / "toy" / f"run-{i}"
        run.mkdir(parents=True)
        (run / "result.json").write_text(json.dumps(record))
    assert submit_runs(runs, board) == (2, 0)  # the matcher run has no leaderboard row
    assert submit_runs(runs, board) == (0, 2)
    written = board.read_text()
    later = runs / "toy" / "run-9"
    later.mkdir()
    (later / "result.json").write_text(json.dumps(_record(seed=2)))
    assert main(["leaderboard", "submit", "--runs-root", str(runs), "--board", str(board)]) == 0
    assert capsys.readouterr().out.startswith(f"{board}: 1 row(s) added from the runs under {runs}/ "
                                              "(2 already on the board); ")
    assert board.read_text().startswith(written) and [r.seed for r in read_board(board)] == [0, 1, 2]
    assert main(["leaderboard", "submit", "--runs-root", str(runs), "--board", str(board)]) == 0
    assert capsys.readouterr().out == f"{board}: nothing to add from the runs under {runs}/ (3 already on the board)\n"

    # a bad row among them is still refused whole
    bad = runs / "toy" / "run-bad"
    bad.mkdir()
    (bad / "result.json").write_text(json.dumps(_record(seed=3, dataset_version="f" * 64)))
    assert main(["leaderboard", "submit", "--runs-root", str(runs), "--board", str(board)]) == 2
    assert "run-bad/result.json:1: dataset_version" in capsys.readouterr().err
    assert len(read_board(board)) == 3
    assert main(["leaderboard", "submit", "--runs-root", str(tmp_path / "none"), "--board", str(board)]) == 2
    assert "no finished teacher or student runs (result.json) to submit" in capsys.readouterr().err
    assert known_versions()["toy"]  # the toy rows above were accepted by the shipped versions file
