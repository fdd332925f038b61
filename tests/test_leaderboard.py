import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ackd_bench.cli import main
from ackd_bench.leaderboard.board import SubmissionError, known_versions, read_board, submit
from ackd_bench.leaderboard.render import PAPER_RESULTS, PaperResult, build_table, load_paper, render
from ackd_bench.results import RESULT_FIELDS, Record

PAPER_TABLES = Path(__file__).resolve().parent / "data" / "paper_tables.tsv"  # the numbers only


def _record(**changes):
    record = {
        "dataset": "toy", "dataset_version": next(iter(known_versions()["toy"])), "method": "kd", "kd_loss": "kd",
        "sembridge": False, "ablation": "", "teacher": "R", "student": "R", "seed": 0, "profile": "smoke", "epochs": 2, "oa": 0.9,
        "f1": 0.88, "val_oa": 0.91, "val_f1": 0.9, "n_test": 111, "config_hash": "a" * 64,
        "code_version": "0.1.0", "wall_seconds": 12.5, "device": "cpu",
    }
    record.update(changes)
    return record


def _write_csv(path, rows):
    """Raw rows (dicts, as a submitter's file holds them, possibly wrong) as a results CSV."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if row.get(k) is None else row[k] for k in RESULT_FIELDS} for row in rows)
    return path


def test_registered_toy_version_matches_a_fresh_build(toy_dir):
    manifest = json.loads((toy_dir / "manifest.json").read_text())
    assert manifest["dataset_version"] in known_versions()["toy"]


def test_percentages_are_converted_and_fractions_kept():
    percent = Record.from_dict(_record(oa=93.7, f1=88.0, val_oa=91.0, val_f1=90.0))
    assert percent.oa == pytest.approx(0.937) and percent.f1 == pytest.approx(0.88)
    with pytest.raises(ValueError, match=r"f1: 0.88 is a fraction but oa=1.5 is a percentage"):
        Record.from_dict(_record(oa=1.5))  # 1.5 % or a typo of a fraction: never guessed
    assert Record.from_dict(_record(oa="0.5")).oa == 0.5
    assert Record.from_dict(_record(method="teacher", kd_loss=None, student=None, oa=None)).oa is None


@pytest.mark.parametrize("changes,message", [
    ({"oa": 130}, "oa: 130 is outside [0, 1]"),
    ({"oa": -0.1}, "oa: -0.1 is outside"),
    ({"seed": "one"}, "seed: expected an integer"),
    ({"f1": "high"}, "f1: expected a number"),
    ({"method": "Fit Net"}, "method: method 'Fit Net': expected teacher, none, LOSS"),
    ({"method": "fitnet"}, "kd_loss: 'kd' does not fit method 'fitnet' (expected 'fitnet')"),
    ({"dataset_version": "f" * 64}, "dataset_version: ffffffffffffffff... is not a known version of toy"),
    ({"dataset": "s2s-mars"}, "dataset: unknown 's2s-mars'"),
    ({"ablation": "ot2,ssm"}, "ablation: 'ot2,ssm' is not a comma-separated subset"),
    ({"kd_loss": "dkd"}, "kd_loss: 'dkd' does not fit method 'kd'"),
    ({"student": "X"}, "student: 'X' is not one of R, M, S"),
])
def test_bad_rows_are_rejected_and_the_board_is_untouched(tmp_path, changes, message):
    board = tmp_path / "board.csv"
    submit([_write_csv(tmp_path / "good.csv", [_record(seed=7)])], board)
    before = board.read_bytes()
    bad = _write_csv(tmp_path / "bad.csv", [_record(seed=1), _record(**{"seed": 2, **changes})])
    with pytest.raises(SubmissionError) as error:
        submit([bad], board)
    assert f"{bad}:3: {message}" in str(error.value)
    assert "nothing written" in str(error.value)
    assert board.read_bytes() == before


def test_malformed_csv_and_duplicates(tmp_path):
    board = tmp_path / "board.csv"
    good = _write_csv(tmp_path / "good.csv", [_record()])
    assert submit([good], board) == 1
    before = board.read_bytes()
    with pytest.raises(SubmissionError, match="duplicate run"):
        submit([good], board)
    twice = _write_csv(tmp_path / "twice.csv", [_record(seed=3), _record(seed=3, oa=0.5)])
    with pytest.raises(SubmissionError, match=r"twice.csv:3: duplicate run .* already in .*twice.csv:2"):
        submit([twice], board)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(",".join(RESULT_FIELDS) + "\ntoy,1,2\n")
    with pytest.raises(SubmissionError, match="ragged.csv:2: malformed CSV row"):
        submit([ragged], board)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SubmissionError, match="not a results CSV"):
        submit([tmp_path / "other.csv"], board)
    assert board.read_bytes() == before


def test_concurrent_submits_lose_no_row(tmp_path):
    board = tmp_path / "board.csv"
    files = [_write_csv(tmp_path / f"r{i}.csv", [_record(seed=10 * i + k) for k in range(5)]) for i in range(2)]
    code = ("import sys; from ackd_bench.leaderboard.board import submit; "
            "[submit([sys.argv[1]], sys.argv[2]) for _ in range(1)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(f), str(board)]) for f in files]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    seeds = sorted(r.seed for r in read_board(board))
    assert seeds == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]


def _runs(method, oas, f1s, **changes):
    loss = {"sembridge": "kd"}.get(method, method)
    return [Record.from_dict(_record(method=method, kd_loss=loss, sembridge=method.startswith("sembridge"), seed=seed,
                                    oa=oa / 100, f1=f1 / 100, **changes))
            for seed, (oa, f1) in enumerate(zip(oas, f1s))]


def test_table_rendering_against_a_hand_written_table():
    # OA: KD 81 ± 1, t-interval 81 ± 4.303 / sqrt(3) = [78.5, 83.5]; SemBridge 91 ± 1, [88.5, 93.5]:
    # separated, so bold. F1: KD [67.0, 77.0], SemBridge [72.5, 77.5]: they overlap, so nothing is.
    board = (_runs("kd", [80, 81, 82], [70, 72, 74]) + _runs("sembridge", [90, 91, 92], [74, 75, 76])
             + _runs("dkd", [84, 86], [74, 76]))  # two seeds: incomplete, listed apart
    table = build_table(5, board, datasets=["toy"], with_paper=False)
    expected = "\n".join([
        "**Table 5** (OA / F1 in %, mean ± std (n) over seeds; bold: best, its 95% t-interval above all others)",
        "",
        "| method | toy OA | toy F1 |",
        "|---|---|---|",
        "| Vanilla KD (smoke profile) | 81.0 ± 1.0 (n=3) | 72.0 ± 2.0 (n=3) |",
        "|   + SemBridge (Vanilla KD) (smoke profile) | **91.0 ± 1.0 (n=3)** | 75.0 ± 1.0 (n=3) |",
        "| RKD | – | – |",
        "|   + SemBridge (RKD) | – | – |",
        "|   + SemBridge (DKD) | – | – |",
        "| Logits | – | – |",
        "|   + SemBridge (Logits) | – | – |",
        "| CTKD | – | – |",
        "|   + SemBridge (CTKD) | – | – |",
        "| LSKD | – | – |",
        "|   + SemBridge (LSKD) | – | – |",
        "",
        "**Table 5, incomplete (a cell with fewer than 3 seeds)** (OA / F1 in %, mean ± std (n) over seeds)",
        "",
        "| method | toy OA | toy F1 |",
        "|---|---|---|",
        "| DKD (smoke profile) | 85.0 ± 1.4 (n=2) | 75.0 ± 1.4 (n=2) |",
    ])
    assert render(table, "md") == expected
    latex = render(table, "latex")
    assert r"\textbf{91.0 $\pm$ 1.0 (n=3)}" in latex and r"81.0 $\pm$ 1.0" in latex
    assert "<b>91.0 ± 1.0 (n=3)</b>" in render(table, "html")
    assert render(table, "csv").splitlines()[2] == "  + SemBridge (Vanilla KD) (smoke profile),91.0 ± 1.0 (n=3)*,75.0 ± 1.0 (n=3)"
    assert build_table(5, board, datasets=["toy"], with_paper=False, min_seeds=2).incomplete == []


def test_each_profile_is_its_own_named_row():
    board = _runs("kd", [90], [80]) + _runs("kd", [70, 74], [60, 64], profile="paper")
    rows = {label: cells for label, cells in build_table(5, board, datasets=["toy"], with_paper=False, min_seeds=1).rows}
    assert rows["Vanilla KD (smoke profile)"][0].text == "90.0 (n=1)"
    assert rows["Vanilla KD (paper profile)"][0].text == "72.0 ± 2.8 (n=2)"
    assert "Vanilla KD" not in rows  # no row mixes or hides its profile


def test_paper_reference_rows_are_shown_and_never_marked():
    table = build_table(4, [], datasets=["s2s-eu"])
    rows = {label: cells for label, cells in table.rows}
    assert [c.text for c in rows["+SemBridge [paper] (reference protocol)"]] == ["93.7", "91.7", "88.4", "92.1", "87.9",
                                                                                "87.8", "90.3"]
    assert rows["DKD [paper] (reference protocol)"][1].text == "91.7"
    md = render(table, "md")
    assert "**" not in md.split("\n", 1)[1] and "| Vanilla KD | – |" in md


def _paper_cells() -> set[tuple[str, ...]]:
    """Every cell of the paper's Tables 3-6 as a paper_results.csv row, read from the tables as printed."""
    sections: dict[str, list[list[str]]] = {}
    for line in PAPER_TABLES.read_text().splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:], [])
        elif not line.startswith("#"):
            current.append(line.split("\t"))
    pairs = ("R/R", "M/M", "S/S", "R/M", "R/S", "M/S")
    datasets = ("s2s-eu", "s2s-cn", "m2s-gl")
    cells = set()
    for i, row in enumerate(sections["Table 3"][2:]):  # blocks of T, S, +SemBridge per pair
        pair, line = pairs[i // 3], i % 3
        method = ("teacher", "none", "sembridge")[line]
        teacher, student = pair.split("/")
        values = [v.replace("/", "") for v in row[2:8]]
        for d, dataset in enumerate(datasets):
            cells.add(("3", dataset, method, "", pair, "" if method == "none" else teacher,
                       "" if method == "teacher" else student, values[2 * d], values[2 * d + 1]))
    names = {"RKD": "rkd", "DKD": "dkd", "Logits": "logits", "CTKD": "ctkd", "LSKD": "lskd", "VPR": "vpr",
             "\\mathcal{L}_{kd}": "kd", "+Ours": "sembridge", "Vanilla KD": "kd"}
    for row in sections["Table 4"][2:]:
        for d, dataset in enumerate(datasets):
            for p, pair in enumerate(pairs):
                cells.add(("4", dataset, names[row[0]], "", pair, *pair.split("/"), row[1 + 7 * d + p], ""))
    previous = None
    for row in sections["Table 5"][2:]:
        method = names.get(row[0]) or ("sembridge" if previous == "kd" else f"sembridge+{previous}")
        previous = method
        for d, dataset in enumerate(datasets):
            cells.add(("5", dataset, method, "", "R/R", "R", "R", row[1 + 2 * d], row[2 + 2 * d]))
    for row in sections["Table 6"][1:]:
        off = [name for name, mark in zip(("ssm", "dynm", "ot1", "ot2"), row[:4]) if mark == "✗"]
        for d, dataset in enumerate(datasets):
            cells.add(("6", dataset, "sembridge", "".join(off), "R/R", "R", "R", row[4 + d], ""))
    return cells


def test_paper_results_transcription_matches_the_paper_cell_by_cell():
    columns = ("table", "dataset", "method", "ablation", "pair", "teacher", "student", "oa", "f1")
    with open(PAPER_RESULTS, newline="") as handle:  # the file's text, as transcribed
        rows = list(csv.DictReader(handle))
    assert len(rows) == 249
    transcribed = {tuple(r[c] for c in columns) for r in rows}
    printed = _paper_cells()
    assert len(printed) == 249 and transcribed == printed, sorted(transcribed ^ printed)[:6]
    # the paper's own quirk, kept: in Table 3 the R/S block prints the ResNet34 teacher's M2S-GL F1 as 85.3
    assert ("3", "m2s-gl", "teacher", "", "R/S", "R", "", "", "85.3") in transcribed
    paper = load_paper()  # as the tables read it: typed, empty cells None
    assert len(paper) == 249 and PaperResult(3, "m2s-gl", "teacher", "", "R/S", "R", None, None, 85.3) in paper


def test_leaderboard_cli_submit_show_plot(tmp_path, capsys):
    board = tmp_path / "lb" / "leaderboard.csv"
    results = _write_csv(tmp_path / "runs.csv", [_record(seed=0), _record(seed=1, oa=0.8)])
    assert main(["leaderboard", "submit", str(results), "--board", str(board)]) == 0
    assert "2 row(s) added" in capsys.readouterr().out
    readme = (board.parent / "README.md").read_text()
    assert "**Table 4**" in readme and "85.0 ± 7.1" in readme
    assert main(["leaderboard", "show", "--table", "4", "--board", str(board)]) == 0
    out = capsys.readouterr().out
    assert "toy R/R" in out and "s2s-eu R/R" in out and "Vanilla KD [paper]" in out
    assert main(["leaderboard", "show", "--board", str(board), "--dataset", "toy", "--no-paper", "--format", "csv",
                 "--table", "4"]) == 0
    assert "[paper]" not in capsys.readouterr().out
    png = tmp_path / "oa.png"
    assert main(["leaderboard", "plot", "--board", str(board), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = _write_csv(tmp_path / "bad.csv", [_record(seed=5, oa=250)])
    assert main(["leaderboard", "submit", str(bad), "--board", str(board)]) == 2
    assert "bad.csv:2: oa: 250" in capsys.readouterr().err


@pytest.mark.parametrize("changes,message", [
    ({"oa": "nan"}, "oa: expected a finite number, got 'nan'"),
    ({"f1": "inf"}, "f1: expected a finite number"),
    ({"device": "=HYPERLINK(\"http://x\",\"cpu\")"}, "device: '=HYPERLINK"),
    ({"device": "<script>alert(1)</script>"}, "device: '<script>"),
    ({"code_version": "@SUM(A1)"}, "code_version: '@SUM(A1)' is not plain text"),
])
def test_nan_formula_and_markup_rows_are_rejected_whole(tmp_path, changes, message):
    board = tmp_path / "board.csv"
    bad = _write_csv(tmp_path / "bad.csv", [_record(seed=1), _record(**{"seed": 2, **changes})])
    with pytest.raises(SubmissionError) as error:
        submit([bad], board)
    assert f"{bad}:3: {message}" in str(error.value) and "nothing written" in str(error.value)
    assert not board.exists()


def test_show_escapes_what_a_hand_edited_board_holds(tmp_path, capsys):
    board = tmp_path / "board.csv"
    submit([_write_csv(tmp_path / "r.csv", [_record(seed=s) for s in range(2)])], board)
    text = board.read_text().replace("cpu", "<b>cpu</b>", 1)
    board.write_text(text)
    assert main(["leaderboard", "show", "--board", str(board), "--table", "4", "--format", "html"]) == 2
    err = capsys.readouterr().err
    assert f"{board}:2: device: '<b>cpu</b>' is not plain text" in err and len(err.strip().splitlines()) == 1
    board.write_text(text.replace("<b>cpu</b>", "cpu"))
    assert main(["leaderboard", "show", "--board", str(board), "--table", "4", "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert "<caption>" in page and "<script" not in page
    from ackd_bench.leaderboard.render import spreadsheet_safe

    assert spreadsheet_safe("=1+2") == "'=1+2" and spreadsheet_safe("93.1 ± 0.4") == "93.1 ± 0.4"


def test_ten_concurrent_submits_lose_no_row_and_the_readme_matches_the_board(tmp_path):
    from ackd_bench.leaderboard.render import README_MARK
    from ackd_bench.leaderboard.summary import readme

    board = tmp_path / "board.csv"
    files = [_write_csv(tmp_path / f"r{i}.csv", [_record(seed=10 * i + k) for k in range(2)]) for i in range(10)]
    code = "import sys; from ackd_bench.leaderboard.board import submit; submit([sys.argv[1]], sys.argv[2], readme=True)"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(f), str(board)]) for f in files]
    assert [p.wait(timeout=300) for p in procs] == [0] * 10
    rows = read_board(board)
    assert sorted(r.seed for r in rows) == sorted(10 * i + k for i in range(10) for k in range(2))
    written = (tmp_path / "board.md").read_text()  # named after its board
    assert written.startswith(README_MARK) and written == readme(rows) + "\n"  # regenerated under the lock


def test_submit_never_overwrites_a_users_own_readme(tmp_path, capsys):
    (tmp_path / "README.md").write_text("# my notes\n")
    board = tmp_path / "leaderboard.csv"
    assert main(["leaderboard", "submit", str(_write_csv(tmp_path / "r.csv", [_record()])), "--board", str(board)]) == 0
    assert (tmp_path / "README.md").read_text() == "# my notes\n"
    assert "is not one this tool wrote: left alone" in capsys.readouterr().out
