"""The paper's Tables 3-6 rendered from the board, seeds aggregated, the paper's numbers beside.

A cell of the board is `mean ± std [lo, hi]` over seeds, in percent, with a bootstrap 95%
confidence interval of the mean; the paper's reference rows (`baselines/paper_results.csv`) are
labelled `[paper]`. The best value of each column is marked (bold; `*` in CSV).
"""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import AckdError
from .board import REPO

PAPER_RESULTS = REPO / "baselines" / "paper_results.csv"
PAPER_DATASETS = ("s2s-eu", "s2s-cn", "m2s-gl")
PAIRS = ("R/R", "M/M", "S/S", "R/M", "R/S", "M/S")
ARCH_NAMES = {"R": "ResNet34", "M": "MobileNetV2", "S": "ShuffleNetV2"}
METHOD_NAMES = {"rkd": "RKD", "dkd": "DKD", "logits": "Logits", "ctkd": "CTKD", "lskd": "LSKD", "vpr": "VPR",
                "kd": "Vanilla KD", "sembridge": "+SemBridge"}
FORMATS = ("md", "csv", "latex", "html")


@dataclass
class Cell:
    value: float | None = None  # percent, for ranking
    text: str = "–"


@dataclass
class Table:
    title: str
    columns: list[tuple[str, str]]  # (dataset, sub-column)
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)


def bootstrap_ci(values: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    if len(values) < 2:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(resamples, len(values)), replace=True).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def board_cell(records: list[dict[str, Any]], metric: str) -> Cell:
    values = np.array([r[metric] for r in records if r[metric] is not None], dtype=float) * 100
    if len(values) == 0:
        return Cell()
    mean = float(values.mean())
    if len(values) == 1:
        return Cell(mean, f"{mean:.1f} (n=1)")
    std = float(values.std(ddof=1))
    lo, hi = bootstrap_ci(values)
    return Cell(mean, f"{mean:.1f} ± {std:.1f} [{lo:.1f}, {hi:.1f}]")


def paper_cell(rows: list[dict[str, str]], metric: str) -> Cell:
    values = [float(r[metric]) for r in rows if r[metric] not in ("", None)]
    return Cell(values[0], f"{values[0]:.1f}") if values else Cell()


def load_paper(path: Path = PAPER_RESULTS) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _matcher(**want: Any) -> Callable[[dict], bool]:
    def match(row: dict) -> bool:
        return all((row.get(k) or "") == (v or "") for k, v in want.items())
    return match


def _row_specs(table: int, pairs: tuple[str, ...] = PAIRS) -> list[tuple[str, dict[str, Any], int]]:
    """(label, filter on method/ablation/teacher/student, paper table) for each row of a layout."""
    specs = []
    if table == 3:
        for pair in pairs:
            t, s = pair.split("/")
            specs += [(f"{pair}  T:{ARCH_NAMES[t]}", {"method": "teacher", "teacher": t, "student": ""}, 3),
                      (f"{pair}  S:{ARCH_NAMES[s]}", {"method": "none", "teacher": "", "student": s}, 3),
                      (f"{pair}  +SemBridge", {"method": "sembridge", "teacher": t, "student": s, "ablation": ""}, 3)]
    elif table == 4:
        specs = [(METHOD_NAMES[m], {"method": m, "ablation": ""}, 4)
                 for m in ("rkd", "dkd", "logits", "ctkd", "lskd", "vpr", "kd", "sembridge")]
    elif table == 5:
        for m in ("kd", "rkd", "dkd", "logits", "ctkd", "lskd"):
            combined = "sembridge" if m == "kd" else f"sembridge+{m}"
            specs += [(METHOD_NAMES[m], {"method": m, "teacher": "R", "student": "R"}, 5),
                      (f"  + SemBridge ({METHOD_NAMES[m]})", {"method": combined, "teacher": "R", "student": "R",
                                                             "ablation": ""}, 5)]
    elif table == 6:
        for off in ("ssm", "dynm", "ot1", "ot2", ""):
            names = {"ssm": "SSM", "dynm": "DynM", "ot1": "L_ot1", "ot2": "L_ot2"}
            label = f"SemBridge without {names[off]}" if off else "SemBridge (all four)"
            specs.append((label, {"method": "sembridge", "teacher": "R", "student": "R", "ablation": off}, 6))
    else:
        raise AckdError(f"--table {table}: expected 3, 4, 5 or 6")
    return specs


def _sub_columns(table: int, pairs: tuple[str, ...] = PAIRS) -> list[str]:
    return {3: ["OA", "F1"], 4: [*pairs, "Avg."], 5: ["OA", "F1"], 6: ["OA"]}[table]


def one_setting(records: list[dict]) -> list[dict]:
    """The runs of one training setting (profile, epochs): seeds of different settings are never
    averaged. The setting with the most runs wins, then the longest training."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r.get("profile", ""), r.get("epochs", 0)), []).append(r)
    if len(groups) <= 1:
        return records
    return max(groups.items(), key=lambda item: (len(item[1]), item[0][1]))[1]


def _cells(table: int, sub: str, records: list[dict], paper: bool) -> Cell:
    if table == 4:
        if sub == "Avg.":
            return Cell()  # filled in afterwards from the row's pair cells
        t, s = sub.split("/")
        rows = [r for r in records if (r.get("teacher") or "") == t and (r.get("student") or "") == s]
        return paper_cell(rows, "oa") if paper else board_cell(one_setting(rows), "oa")
    metric = sub.lower()
    return paper_cell(records, metric) if paper else board_cell(one_setting(records), metric)


def build_table(table: int, board: list[dict[str, Any]], datasets: list[str] | None = None,
                paper_rows: list[dict[str, str]] | None = None, with_paper: bool = True,
                pairs: list[str] | None = None) -> Table:
    paper_rows = load_paper() if paper_rows is None else paper_rows
    board_datasets = sorted({r["dataset"] for r in board}, key=lambda d: (d in PAPER_DATASETS, d))
    if datasets is None:
        datasets = board_datasets + [d for d in PAPER_DATASETS if with_paper and d not in board_datasets]
    pairs = tuple(pairs or PAIRS)
    subs = _sub_columns(table, pairs)
    result = Table(f"Table {table}", [(d, s) for d in datasets for s in subs])
    for label, want, paper_table in _row_specs(table, pairs):
        match = _matcher(**want)
        board_match = [r for r in board if match(r)]
        paper_match = [r for r in paper_rows if int(r["table"]) == paper_table and match(r)]
        if table == 3:  # teacher and student-alone rows belong to their pair's block
            pair = label.split()[0]
            paper_match = [r for r in paper_match if r["pair"] == pair]
        by_profile: dict[str, list[dict]] = {}
        for r in board_match:  # a profile is a different experiment: its own row, named
            by_profile.setdefault(str(r.get("profile") or "unknown"), []).append(r)
        sources = [(f"{label} ({profile} profile)", "board", rows) for profile, rows in sorted(by_profile.items())]
        sources = sources or [(label, "board", [])]
        if with_paper:
            sources.append((f"{label} [paper]", "paper", paper_match))
        for row_label, source, rows in sources:
            cells = []
            for dataset, sub in result.columns:
                selected = [r for r in rows if r["dataset"] == dataset]
                cells.append(_cells(table, sub, selected, paper=(source == "paper")))
            if table == 4:
                _fill_averages(result.columns, cells)
            if source == "paper" and all(c.value is None for c in cells):
                continue
            result.rows.append((row_label, cells))
    return result


def _fill_averages(columns: list[tuple[str, str]], cells: list[Cell]) -> None:
    for i, (dataset, sub) in enumerate(columns):
        if sub == "Avg.":
            values = [c.value for (d, s), c in zip(columns, cells) if d == dataset and s != "Avg."]
            if all(v is not None for v in values):
                mean = float(np.mean(values))
                cells[i] = Cell(mean, f"{mean:.1f}")


def _best(table: Table) -> set[tuple[int, int]]:
    best = set()
    for j in range(len(table.columns)):
        values = [(row[1][j].value, i) for i, row in enumerate(table.rows) if row[1][j].value is not None]
        if values:
            top = max(v for v, _ in values)
            best |= {(i, j) for v, i in values if v == top}
    return best


def render(table: Table, fmt: str = "md") -> str:
    if fmt not in FORMATS:
        raise AckdError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    best = _best(table)
    headers = [f"{d} {s}" for d, s in table.columns]

    def text(i: int, j: int, cell: Cell) -> str:
        if (i, j) not in best:
            return html.escape(cell.text) if fmt == "html" else cell.text
        return {"md": f"**{cell.text}**", "csv": f"{cell.text}*", "latex": f"\\textbf{{{cell.text}}}",
                "html": f"<b>{html.escape(cell.text)}</b>"}[fmt]

    body = [[label] + [text(i, j, c) for j, c in enumerate(cells)] for i, (label, cells) in enumerate(table.rows)]
    if fmt == "md":
        metrics = "OA" if all(sub not in ("OA", "F1") or sub == "OA" for _, sub in table.columns) else "OA / F1"
        lines = [f"**{table.title}** ({metrics} in %, mean ± std [bootstrap 95% CI] over seeds; best in bold)", "",
                 "| method | " + " | ".join(headers) + " |", "|---|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    if fmt == "csv":
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["method", *headers])
        writer.writerows([[spreadsheet_safe(c) for c in row] for row in body])
        return buffer.getvalue().rstrip("\n")
    if fmt == "latex":
        def tex(s: str) -> str:
            return s.replace("±", r"$\pm$").replace("_", r"\_").replace("%", r"\%")
        datasets = list(dict.fromkeys(d for d, _ in table.columns))
        span = len(table.columns) // len(datasets)
        lines = [r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\toprule",
                 "Method & " + " & ".join(rf"\multicolumn{{{span}}}{{c}}{{{tex(d)}}}" for d in datasets) + r" \\",
                 " & " + " & ".join(tex(s) for _, s in table.columns) + r" \\", r"\midrule"]
        lines += [" & ".join(tex(c) for c in row) + r" \\" for row in body]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines)
    # cells arrive escaped (best ones wrapped in <b>); the row label and caption are escaped here
    rows_html = "".join(f"<tr><td>{html.escape(row[0])}</td>" + "".join(f"<td>{c}</td>" for c in row[1:]) + "</tr>"
                        for row in body)
    head = "<tr><th>method</th>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"
    return (f"<table>\n<caption>{html.escape(table.title)}</caption>\n<thead>{head}</thead>\n<tbody>{rows_html}</tbody>"
            "\n</table>")


def spreadsheet_safe(cell: str) -> str:
    """A CSV cell that a spreadsheet will not evaluate as a formula (OWASP's CSV-injection rule)."""
    return f"'{cell}" if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


README_MARK = "<!-- generated by `ackd-bench leaderboard submit`; edits are overwritten -->"


def readme(board: list[dict[str, Any]]) -> str:
    parts = [README_MARK, "# leaderboard", "",
             "Regenerated by `ackd-bench leaderboard submit` from `leaderboard.csv` (one row per run; schema in",
             "`ackd_bench/results.py`). Metrics are stored as fractions and shown in percent. Rows of the synthetic",
             "`toy` benchmark are its own column block and never mixed with the real datasets. `[paper]` rows are",
             "the paper's own numbers (`baselines/paper_results.csv`). Accepted dataset versions are listed in",
             "`dataset_versions.csv`.", ""]
    for number in (3, 4, 5, 6):
        parts += [render(build_table(number, board), "md"), ""]
    return "\n".join(parts)
