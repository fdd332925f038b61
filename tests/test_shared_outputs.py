"""What users share (boards, results, profiles, checkpoints) cannot inject markup, claim settings it
did not use, exhaust the machine, or end in a traceback (issue: output, claims and bounds)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ackd_bench.cli import main
from ackd_bench.errors import AckdError
from ackd_bench.leaderboard.board import read_board, submit
from ackd_bench.leaderboard.render import latex_safe, markdown_safe
from ackd_bench.results import RESULT_FIELDS, Record
from ackd_bench.train.profiles import load_profile
from ackd_bench.train.request import RunRequest, SemBridgeSettings

from .test_leaderboard import _record, _write_csv

XSS = 'x" onmouseover="alert(1)"><img src=x onerror=alert(1)>'


def one_line_exit_2(argv: list[str], capsys, *fragments: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("ackd-bench: error: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


def _board_with(tmp_path: Path, **changes) -> Path:
    """A board CSV written by hand (as a shared one could be), one row changed."""
    board = tmp_path / "shared.csv"
    row = {**_record(), **changes}
    with open(board, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in RESULT_FIELDS})
    return board


# --- 1 and 2: markup never reaches a page, a README or a LaTeX table ------------------------------

def test_a_board_naming_a_dataset_with_markup_is_refused_and_the_site_stays_clean(tmp_path, capsys):
    board = _board_with(tmp_path, dataset=XSS)
    one_line_exit_2(["leaderboard", "site", "--board", str(board), "--out", str(tmp_path / "site")], capsys,
                    "dataset", "not a plain name")
    assert not (tmp_path / "site" / "index.html").exists()
    good = _board_with(tmp_path)
    one_line_exit_2(["leaderboard", "site", "--board", str(good), "--out", str(tmp_path / "site"),
                     "--dataset", 'q"><script>alert(1)</script>'], capsys, "--dataset", "plain name")
    assert main(["leaderboard", "site", "--board", str(good), "--out", str(tmp_path / "site")]) == 0
    page = (tmp_path / "site" / "index.html").read_text()
    assert "onerror" not in page and "<img src=x" not in page


@pytest.mark.parametrize("profile", ["x|y](https://evil.example) ![t](https://evil.example/p.png)",
                                     "smoke\u200b", "sm\u043eke", "\u202esmoke", "=cmd|' /C calc'!A0"])
def test_profile_names_are_visible_ascii_names(profile):
    with pytest.raises(ValueError, match="profile"):
        Record.from_dict(_record(profile=profile))


def test_markdown_and_latex_escape_what_could_break_out():
    assert markdown_safe("a|b](https://e) ![i](p.png) <b>`c`") == "a\\|b]\\(https://e) ![i]\\(p.png) \\<b\\>\\`c\\`"
    assert latex_safe(r"\input{/etc/passwd} $x$ 50% a_b ± c") == (
        r"\textbackslash{}input\{/etc/passwd\} \$x\$ 50\% a\_b $\pm$ c")


# --- 3: a result's claims match its settings ------------------------------------------------------

def test_every_change_but_epochs_renames_the_profile(tmp_path):
    assert load_profile("smoke", {"student": {"epochs": 7}})["name"] == "smoke"  # rows are keyed by epochs too
    changed = {load_profile("smoke", {"student": {key: value}})["name"]
               for key, value in (("lr", 0.5), ("batch_size", 8), ("lr", 0.25))}
    assert len(changed) == 3 and all(name.startswith("smoke+set-") for name in changed)
    mine = tmp_path / "paper.yaml"  # any file can be called paper.yaml
    mine.write_text("extends: paper\nstudent: {epochs: 1}\n")
    assert load_profile(str(mine))["name"].startswith("paper@")


def test_sembridge_options_rename_the_profile_they_run_under(mini_toy, mini_teacher, tmp_path):
    from ackd_bench.train.api import RunOptions, train_student

    result = train_student(RunRequest.student_run(mini_toy, "S", "sembridge", teacher=mini_teacher, ablation="ssm",
                                                  profile="smoke", overrides={"epochs": 1},
                                                  sembridge=SemBridgeSettings(gamma=2.0)),
                           RunOptions(runs_root=tmp_path, device="cpu", progress=False))
    assert result["profile"].startswith("smoke+set-")
    config = json.loads((Path(result["run_dir"]) / "config.json").read_text())
    assert "sembridge.gamma=2.0" in config["profile_set"]


# --- 4: unknown settings are errors that name the valid ones ---------------------------------------

@pytest.mark.parametrize("text,message", [
    ("extends: smoke\nteacher: {nonsense_key: 1}\n", "unknown key teacher.nonsense_key: expected one of teacher.optimizer"),
    ("extends: smoke\nstudent: {epoch: 3}\n", "unknown key student.epoch"),
    ("extends: smoke\nmethods: {nosuchmethod: {x: 1}}\n", "nosuchmethod"),
    ("extends: smoke\nmethods: {kd: {temperature: hot}}\n", "methods.kd.temperature is 'hot'"),
    ("extends: smoke\nepochs: 3\n", "unknown key(s) epochs"),
    ("extends: smoke\nseed: abc\n", "seed is 'abc'"),
])
def test_unknown_or_mistyped_profile_settings_are_refused(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(AckdError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_profile(str(path))


@pytest.mark.parametrize("assignment,message", [
    ("seed=abc", "seed is 'abc'"), ("methods.kd.temperature=hot", "methods.kd.temperature is 'hot'"),
    ("methods.nosuchmethod.x=1", "nosuchmethod"),
])
def test_set_values_are_checked_like_the_profile(mini_toy, tmp_path, capsys, assignment, message):
    one_line_exit_2(["train-teacher", str(mini_toy), "--arch", "S", "--profile", "smoke", "--set", assignment,
                     "--out", str(tmp_path / "never"), "--quiet"], capsys, message)
    assert not (tmp_path / "never").exists()


def test_extends_names_a_profile_not_a_file_and_chains_are_bounded(tmp_path, mini_toy, capsys):
    """Round four, classes 7 and 8: `extends:` could name any file (its first line came back in the
    error), and a long chain or deep nesting (in a file or a --set value) ended in RecursionError."""
    secret = tmp_path / "secret.txt"
    secret.write_text("password: hunter2 [unclosed\n")
    for parent in (str(secret), "../secret", "/etc/passwd"):
        (tmp_path / "p.yaml").write_text(f"extends: {parent}\n")
        with pytest.raises(AckdError, match=r"p.yaml: extends .*expected a plain name") as caught:
            load_profile(str(tmp_path / "p.yaml"))
        assert "hunter2" not in str(caught.value)
    (tmp_path / "mine.yaml").write_text("extends: smoke\nstudent: {epochs: 1}\n")  # a sibling file first, else built-in
    (tmp_path / "child.yaml").write_text("extends: mine\n")
    assert load_profile(str(tmp_path / "child.yaml"))["student"]["epochs"] == 1
    for i in range(12):
        (tmp_path / f"c{i}.yaml").write_text(f"extends: c{i + 1}\n")
    (tmp_path / "c12.yaml").write_text("extends: smoke\n")
    with pytest.raises(AckdError, match=r"extends: chain is longer than 8 profiles"):
        load_profile(str(tmp_path / "c0.yaml"))
    (tmp_path / "deep.yaml").write_text("extends: smoke\nstudent: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(AckdError, match=r"deep.yaml: nested deeper than 64 levels"):
        load_profile(str(tmp_path / "deep.yaml"))
    one_line_exit_2(["train-teacher", str(mini_toy), "--arch", "S", "--profile", "smoke", "--set",
                     "methods.kd.temperature=" + "[" * 3000 + "]" * 3000, "--out", str(tmp_path / "never"),
                     "--quiet"], capsys, "nested deeper than 64 levels")


# --- 5: bounded work for any input ---------------------------------------------------------------------

def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    lines = ["extends: smoke", 'a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    with pytest.raises(AckdError, match="aliases"):
        load_profile(str(path))
    assert time.monotonic() - started < 5


def test_implausible_checkpoint_metadata_is_refused_before_allocating(mini_toy, mini_teacher, tmp_path):
    from ackd_bench.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from ackd_bench.train.runs import load_dataset
    from ackd_bench.train.teacher_cache import load_teacher

    for key, value in (("in_channels", 10**9), ("num_classes", 10**9), ("in_channels", 1e9), ("width", "wide")):
        state = load_checkpoint(mini_teacher)
        state[key] = value
        path = tmp_path / f"{key}.pt"
        save_checkpoint(path, state)
        with pytest.raises(CheckpointError, match=key if key != "width" else "width a number"):
            load_teacher(path, load_dataset(mini_toy).manifest)


def test_absurd_numbers_are_refused_on_submit(tmp_path):
    for field, value in (("epochs", 1e300), ("seed", 2**40), ("n_test", 10**12), ("wall_seconds", 1e12)):
        with pytest.raises(ValueError, match=field):
            Record.from_dict(_record(**{field: value}))


# --- 6: one line, exit 2, nothing lost ----------------------------------------------------------------

def test_filesystem_and_encoding_problems_are_one_line(tmp_path, capsys, monkeypatch, cli):
    results = _write_csv(tmp_path / "r.csv", [_record()])
    folder = tmp_path / "a-folder.csv"
    folder.mkdir()
    one_line_exit_2(["leaderboard", "submit", str(results), "--board", str(folder)], capsys, str(folder))
    home = tmp_path / "home-is-a-file"
    home.write_text("x")
    monkeypatch.setenv("ACKD_BENCH_HOME", str(home))
    one_line_exit_2(["leaderboard", "submit", str(results)], capsys, str(home))
    target = tmp_path / "site-is-a-file"
    target.write_text("x")
    board = _write_csv(tmp_path / "b.csv", [])
    submit([results], tmp_path / "leaderboard.csv")
    one_line_exit_2(["leaderboard", "site", "--board", str(tmp_path / "leaderboard.csv"), "--out", str(target)],
                    capsys, str(target))
    assert board.exists()
    shown = cli("leaderboard", "show", "--table", "6", "--board", str(tmp_path / "leaderboard.csv"))
    assert shown.returncode == 0
    latin = subprocess.run([sys.executable, "-m", "ackd_bench.cli", "leaderboard", "show", "--table", "6", "--board",
                            str(tmp_path / "leaderboard.csv")], capture_output=True, timeout=120,
                           env={**os.environ, "PYTHONIOENCODING": "latin-1"})  # a terminal without ✓
    assert latin.returncode == 0 and b"Traceback" not in latin.stderr, latin.stderr
    assert b"\\u2013" in latin.stdout  # the en dash of an empty cell, escaped


def test_a_failed_board_write_leaves_board_and_readme_as_they_were(tmp_path, monkeypatch):
    from ackd_bench.leaderboard import board as board_module

    board = tmp_path / "leaderboard.csv"
    submit([_write_csv(tmp_path / "a.csv", [_record(seed=0)])], board, readme=True)
    before = board.read_bytes(), (tmp_path / "README.md").read_bytes()
    calls = []
    real = board_module.atomic_path

    def full_disk_on_the_readme(path, *args, **kwargs):
        calls.append(Path(path).name)
        if Path(path).name == "README.md":
            raise OSError(28, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(board_module, "atomic_path", full_disk_on_the_readme)
    with pytest.raises(OSError):
        submit([_write_csv(tmp_path / "b.csv", [_record(seed=1)])], board, readme=True)
    assert calls == ["leaderboard.csv", "README.md"]
    assert (board.read_bytes(), (tmp_path / "README.md").read_bytes()) == before
    monkeypatch.undo()
    assert submit([_write_csv(tmp_path / "b.csv", [_record(seed=1)])], board, readme=True) == 1  # not a "duplicate"
    assert len(read_board(board)) == 2


# --- the class: random boards, records and profiles ------------------------------------------------------

def test_random_boards_records_and_profiles_end_in_success_or_one_line(tmp_path, capsys):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    nasty = st.sampled_from([XSS, "<script>alert(1)</script>", "[x](https://e)", "![i](https://e/p.png)",
                             r"\input{/etc/passwd}", "=1+1", "\u202etoy", "to\u200by", "1e300", "nan", "-1", "", "..",
                             "../x", "smoke", "toy", "kd", "sembridge+zzz", "R", "0.9", "a" * 300])
    text = st.one_of(nasty, st.text(max_size=15))
    tried = []

    @settings(max_examples=int(os.environ.get("ACKD_FUZZ_EXAMPLES", 100)), deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck))
    @given(field=st.sampled_from(list(RESULT_FIELDS)), value=text, yaml_key=st.sampled_from(
        ["seed", "teacher.lr", "student.epochs", "student.loss_weights", "methods.kd", "options.matcher_loss",
         "extends", "name", "matcher.augment"]), yaml_value=st.one_of(nasty, st.integers(-5, 10**12),
                                                                      st.lists(st.integers(0, 3), max_size=3)))
    def check(field, value, yaml_key, yaml_value):
        tried.append(1)
        board = _board_with(tmp_path, **{field: value})
        for argv in (["leaderboard", "show", "--board", str(board)],
                     ["leaderboard", "show", "--board", str(board), "--format", "latex"],
                     ["leaderboard", "site", "--board", str(board), "--out", str(tmp_path / "site")]):
            code = main(argv)
            captured = capsys.readouterr()
            assert code in (0, 2), captured.err
            if code == 2:
                assert len(captured.err.strip().splitlines()) == 1, captured.err
            out = captured.out + ((tmp_path / "site" / "index.html").read_text() if "site" in argv and code == 0
                                  else "")
            for payload in ("<script>alert", "onerror=alert", 'onmouseover="alert', "](https://e)", r"\input{"):
                assert payload not in out, (argv, payload)
        section, _, key = yaml_key.partition(".")
        profile = tmp_path / "fuzz.yaml"
        body = {"extends": "smoke", section: ({key: yaml_value} if key else yaml_value)}
        profile.write_text(json.dumps(body))  # JSON is YAML
        try:
            load_profile(str(profile))
        except AckdError as exc:
            assert "\n" not in str(exc)

    check()
    assert len(tried) >= min(80, int(os.environ.get("ACKD_FUZZ_EXAMPLES", 100)))


def test_plot_reports_the_file_it_wrote_and_a_second_build_of_a_folder_waits_its_turn(tmp_path, capsys):
    from filelock import FileLock

    board = tmp_path / "leaderboard.csv"
    submit([_write_csv(tmp_path / "a.csv", [_record(seed=0)])], board)
    folder = tmp_path / "plots"
    folder.mkdir()
    assert main(["leaderboard", "plot", "--board", str(board), "--out", str(folder)]) == 0
    written = Path(capsys.readouterr().out.strip())
    assert written == folder / "leaderboard_oa.png" and written.is_file()

    out = tmp_path / "toy"
    with FileLock(str(tmp_path / ".toy.build.lock")):  # another build of the same folder is running
        one_line_exit_2(["build", "toy", "--out", str(out), "--quiet", "--no-mi"], capsys, "another build")
    assert not out.exists()


def test_a_row_of_a_method_not_installed_here_is_refused(tmp_path, capsys):
    results = _write_csv(tmp_path / "r.csv", [_record(method="sembridge+zzz", kd_loss="zzz", sembridge=True)])
    assert main(["leaderboard", "submit", str(results), "--board", str(tmp_path / "leaderboard.csv")]) == 2
    assert "unknown distillation method 'zzz'" in capsys.readouterr().err
    assert not (tmp_path / "leaderboard.csv").exists()


def test_a_teacher_with_nan_weights_is_one_line_in_transport_cost(mini_toy, mini_teacher, tmp_path, capsys):
    from ackd_bench.train.api import RunOptions, train_classifier
    from ackd_bench.train.checkpoint import load_checkpoint, save_checkpoint

    student = train_classifier(RunRequest.student_run(mini_toy, "S", profile="smoke", overrides={"epochs": 1}),
                               RunOptions(run_dir=tmp_path / "student", device="cpu", progress=False))
    state = load_checkpoint(mini_teacher)
    state["module"] = {k: v.float().fill_(float("nan")) if v.is_floating_point() else v
                       for k, v in state["module"].items()}
    save_checkpoint(tmp_path / "nan.pt", state)
    one_line_exit_2(["transport-cost", str(mini_toy), "--teacher", str(tmp_path / "nan.pt"), "--student",
                     str(Path(student["run_dir"]) / "checkpoints" / "best.pt"), "--device", "cpu"], capsys,
                    "non-finite logits")
