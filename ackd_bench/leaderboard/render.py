"""The paper's Tables 3-6 rendered from the board, seeds aggregated, the paper's numbers beside.

A board cell is `mean ± std (n=N)` over seeds, in percent. The best value of a column is marked
(bold; `*` in CSV) only when its Student-t 95% interval lies above every other complete row's: with
three seeds most differences are not separated, and the table says so by marking nothing. A
method's row is complete when each of its cells holds at least `min_seeds` seeds on every dataset
it was run on; incomplete rows are listed apart, under the table. Each training profile, and each
reporting protocol, is its own row; a row of the `reference` protocol says so. The paper's numbers
(`baselines/paper_results.csv`, all of the reference protocol) are labelled `[paper]` and never marked.
"""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np

from ..errors import AckdError
from ..experiment import BUILTIN_LOSSES, Row, parse_method, parse_pairs, sub_columns, table_rows
from ..resources import resource_file
from ..results import Record
from .stats import Interval, t_interval

PAPER_RESULTS = resource_file("methods", "paper_results.csv")
PAPER_DATASETS = ("s2s-eu", "s2s-cn", "m2s-gl")
FORMATS = ("md", "csv", "latex", "html")
MIN_SEEDS = 3


@dataclass
class Cell:
    value: float | None = None  # percent, for ranking
    text: str = "–"
    n: int = 0
    interval: Interval | None = None


@dataclass
class TableRow:
    label: str
    cells: list[Cell]
    source: str = "board"  # board | paper
    profile: str | None = None
    records: list[Record] = field(default_factory=list)
    protocol: str = "heldout"


@dataclass
class Table:
    title: str
    columns: list[tuple[str, str]]  # (dataset, sub-column)
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)
    incomplete: list[tuple[str, list[Cell]]] = field(default_factory=list)
    details: list[TableRow] = field(default_factory=list)  # every row with its source, profile and runs
    min_seeds: int = MIN_SEEDS


# the paper's code has no test set: every published number is the best epoch on the fold it was
# selected on (train.py:98-100, 240, 272-292), what the `reference` protocol reproduces
PAPER_PROTOCOL = "reference"


@dataclass(frozen=True)
class PaperResult:
    """A row of `paper_results.csv`: the paper's OA and F1 (in percent) for one method, pair and
    dataset of one table. Not a Record: no run stands behind it (no seed, version or device)."""

    table: int
    dataset: str
    method: str
    ablation: str
    pair: str
    teacher: str | None  # None where the paper's row has none (the student alone)
    student: str | None  # None for a teacher's row
    oa: float | None  # None where the paper prints none
    f1: float | None

    @property
    def protocol(self) -> str:
        return PAPER_PROTOCOL

    @classmethod
    def from_csv(cls, row: dict[str, str]) -> PaperResult:
        def number(text: str) -> float | None:
            return float(text) if text else None

        return cls(int(row["table"]), row["dataset"], row["method"], row["ablation"], row["pair"],
                   row["teacher"] or None, row["student"] or None, number(row["oa"]), number(row["f1"]))


def board_cell(records: list[Record], metric: str) -> Cell:
    values = np.array([getattr(r, metric) for r in records if getattr(r, metric) is not None], dtype=float) * 100
    if len(values) == 0:
        return Cell()
    mean = float(values.mean())
    if len(values) == 1:
        return Cell(mean, f"{mean:.1f} (n=1)", 1)
    return Cell(mean, f"{mean:.1f} ± {float(values.std(ddof=1)):.1f} (n={len(values)})", len(values), t_interval(values))


def paper_cell(rows: list[PaperResult], metric: str) -> Cell:
    values = [getattr(r, metric) for r in rows if getattr(r, metric) is not None]
    return Cell(values[0], f"{values[0]:.1f}") if values else Cell()


def load_paper(path: Path = PAPER_RESULTS) -> list[PaperResult]:
    with open(path, newline="") as handle:
        return [PaperResult.from_csv(row) for row in csv.DictReader(handle)]


def protocol_label(protocol: str) -> str:
    """What a row's label adds for its protocol: nothing for the default, `heldout`."""
    return "" if protocol == "heldout" else f"{protocol} protocol"


def with_protocol(label: str, protocol: str) -> str:
    """`label (reference protocol)`, or the label alone for `heldout`."""
    return f"{label} ({protocol_label(protocol)})" if protocol_label(protocol) else label


def outside_losses(board: list[Record]) -> tuple[str, ...]:
    """Distillation losses on the board that are not built in (outside methods), sorted."""
    losses = {parse_method(r.method).loss for r in board if r.method not in ("teacher", "none")}
    return tuple(sorted(loss for loss in losses if loss and loss not in BUILTIN_LOSSES))


def one_setting(records: list[Record]) -> list[Record]:
    """The runs of one training length: runs of different lengths are never averaged. The length
    with the most runs wins, then the longest."""
    groups: dict[int, list[Record]] = {}
    for r in records:
        groups.setdefault(r.epochs, []).append(r)
    if len(groups) <= 1:
        return records
    return max(groups.items(), key=lambda item: (len(item[1]), item[0]))[1]


def _cells(table: int, row: Row, columns: list[tuple[str, str]], records: list[Record] | list[PaperResult],
           paper: bool) -> list[Cell]:
    cells = []
    for dataset, sub in columns:
        selected = [r for r in records if r.dataset == dataset]
        if table == 4:
            if sub == "Avg.":
                cells.append(Cell())  # filled in afterwards from the row's pair cells
                continue
            selected = [r for r in selected if row.matches(r, sub)]
            metric = "oa"
        else:
            metric = sub.lower()
        cells.append(paper_cell(selected, metric) if paper else board_cell(one_setting(selected), metric))
    if table == 4:
        _fill_averages(columns, cells)
    return cells


def _complete(columns: list[tuple[str, str]], cells: list[Cell], min_seeds: int) -> bool:
    """At least `min_seeds` seeds in every cell of each dataset the row has any run on."""
    for dataset in dict.fromkeys(d for d, _ in columns):
        own = [c for (d, s), c in zip(columns, cells) if d == dataset and s != "Avg."]
        if any(c.n for c in own) and any(c.n < min_seeds for c in own):
            return False
    return True


def build_table(table: int, board: list[Record], datasets: list[str] | None = None,
                paper_rows: list[PaperResult] | None = None, with_paper: bool = True,
                pairs: list[str] | None = None, min_seeds: int = MIN_SEEDS) -> Table:
    paper_rows = load_paper() if paper_rows is None else paper_rows
    board_datasets = sorted({r.dataset for r in board}, key=lambda d: (d in PAPER_DATASETS, d))
    if datasets is None:
        datasets = board_datasets + [d for d in PAPER_DATASETS if with_paper and d not in board_datasets]
    pairs = tuple(parse_pairs(pairs))
    result = Table(f"Table {table}", [(d, s) for d in datasets for s in sub_columns(table, pairs)], min_seeds=min_seeds)
    for row in table_rows(table, pairs, outside_losses(board)):
        by_setting: dict[tuple[str, str], list[Record]] = {}
        for r in board:  # a profile or a protocol is a different experiment: its own row, named
            if row.matches(r):
                by_setting.setdefault((r.profile or "unknown", r.protocol), []).append(r)
        for (profile, protocol), records in sorted(by_setting.items()):
            cells = _cells(table, row, result.columns, records, paper=False)
            label = f"{row.label} ({', '.join(filter(None, [f'{profile} profile', protocol_label(protocol)]))})"
            detail = TableRow(label, cells, "board", profile, records, protocol)
            result.details.append(detail)
            (result.rows if _complete(result.columns, cells, min_seeds) else result.incomplete).append((label, cells))
        if not by_setting:  # the layout stays whole: an empty row says nobody has run it yet
            result.rows.append((row.label, [Cell() for _ in result.columns]))
        if with_paper:
            paper_match = [r for r in paper_rows if r.table == table and row.matches(r)]
            if table == 3:  # the paper repeats a teacher in every pair it teaches: take this pair's
                paper_match = [r for r in paper_match if r.pair == row.pairs[0]]
            cells = _cells(table, row, result.columns, paper_match, paper=True)
            if any(c.value is not None for c in cells):
                label = with_protocol(f"{row.label} [paper]", PAPER_PROTOCOL)
                result.rows.append((label, cells))
                result.details.append(TableRow(label, cells, "paper", protocol=PAPER_PROTOCOL))
    return result


def _fill_averages(columns: list[tuple[str, str]], cells: list[Cell]) -> None:
    for i, (dataset, sub) in enumerate(columns):
        if sub == "Avg.":
            values = [c.value for (d, s), c in zip(columns, cells) if d == dataset and s != "Avg."]
            if all(v is not None for v in values):
                mean = float(np.mean(values))
                cells[i] = Cell(mean, f"{mean:.1f}")


def _best(rows: list[tuple[str, list[Cell]]], columns: int) -> set[tuple[int, int]]:
    """(row, column) of each column's top board value whose t-interval lies above all others'."""
    best = set()
    for j in range(columns):
        ranked = sorted(((row[1][j], i) for i, row in enumerate(rows) if row[1][j].interval is not None),
                        key=lambda item: -item[0].value)
        if len(ranked) >= 2 and all(ranked[0][0].interval.separated_above(c.interval) for c, _ in ranked[1:]):
            best.add((ranked[0][1], j))
    return best


def render(table: Table, fmt: str = "md") -> str:
    if fmt not in FORMATS:
        raise AckdError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    text = _render_rows(table, table.rows, table.title, fmt, caption=True)
    if table.incomplete:
        title = f"{table.title}, incomplete (a cell with fewer than {table.min_seeds} seeds)"
        text += "\n\n" + _render_rows(table, table.incomplete, title, fmt, caption=False)
    return text


def _render_rows(table: Table, rows: list[tuple[str, list[Cell]]], title: str, fmt: str, caption: bool) -> str:
    best = _best(rows, len(table.columns)) if caption else set()
    headers = [f"{d} {s}" for d, s in table.columns]

    def text(i: int, j: int, cell: Cell) -> str:
        if (i, j) not in best:
            return {"html": html.escape(cell.text), "latex": latex_safe(cell.text)}.get(fmt, cell.text)
        return {"md": f"**{cell.text}**", "csv": f"{cell.text}*", "latex": f"\\textbf{{{latex_safe(cell.text)}}}",
                "html": f"<b>{html.escape(cell.text)}</b>"}[fmt]

    body = [[label] + [text(i, j, c) for j, c in enumerate(cells)] for i, (label, cells) in enumerate(rows)]
    if fmt == "md":  # labels and headers escaped for Markdown: no table break, link, image or raw HTML
        body = [[markdown_safe(row[0]), *row[1:]] for row in body]
        headers = [markdown_safe(h) for h in headers]
        metrics = "OA" if all(sub not in ("OA", "F1") or sub == "OA" for _, sub in table.columns) else "OA / F1"
        note = ("mean ± std (n) over seeds; bold: best, its 95% t-interval above all others" if caption
                else "mean ± std (n) over seeds")
        lines = [f"**{title}** ({metrics} in %, {note})", "",
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
    if fmt == "latex":  # cells arrive escaped (best ones in \textbf); labels and headers are escaped here
        tex = latex_safe
        datasets = list(dict.fromkeys(d for d, _ in table.columns))
        span = len(table.columns) // len(datasets)
        lines = [r"\begin{tabular}{l" + "c" * len(table.columns) + "}", r"\toprule",
                 "Method & " + " & ".join(rf"\multicolumn{{{span}}}{{c}}{{{tex(d)}}}" for d in datasets) + r" \\",
                 " & " + " & ".join(tex(s) for _, s in table.columns) + r" \\", r"\midrule"]
        lines += [" & ".join([tex(row[0]), *row[1:]]) + r" \\" for row in body]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines)
    # cells arrive escaped (best ones wrapped in <b>); the row label and caption are escaped here
    rows_html = "".join(f"<tr><td>{html.escape(row[0])}</td>" + "".join(f"<td>{c}</td>" for c in row[1:]) + "</tr>"
                        for row in body)
    head = "<tr><th>method</th>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"
    return (f"<table>\n<caption>{html.escape(title)}</caption>\n<thead>{head}</thead>\n<tbody>{rows_html}</tbody>"
            "\n</table>")


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
                 "^": r"\textasciicircum{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}"}
MARKDOWN_SPECIAL = "\\|<>`"  # table breaks, raw HTML, code spans


def latex_safe(text: str) -> str:
    """Every LaTeX special character escaped, then the one symbol the tables use."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text).replace("±", r"$\pm$")


def markdown_safe(text: str) -> str:
    """Text for a Markdown table cell: what could break out of it backslash-escaped, and the "](" that
    every inline link and image needs broken."""
    return "".join(f"\\{ch}" if ch in MARKDOWN_SPECIAL else ch for ch in text).replace("](", "]\\(")


def spreadsheet_safe(cell: str) -> str:
    """A CSV cell that a spreadsheet will not evaluate as a formula (OWASP's CSV-injection rule)."""
    return f"'{cell}" if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


README_MARK = "<!-- generated by `ackd-bench leaderboard submit`; edits are overwritten -->"
