"""Across-cell statistics of a board (see stats.py for the estimators):

- each Table-4 method (per profile and protocol): the IQM of test OA over every run of every cell
  (a dataset and a pair) it has, with a stratified-bootstrap 95% interval;
- Table 5's question, per distillation loss X (per profile and protocol): the probability that a
  run of SemBridge + X beats a run of X, averaged over the datasets both were run on (R/R), with
  its interval. Above 0.5 with the interval above 0.5: SemBridge helps X.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from pathlib import Path

from ..experiment import SEMBRIDGE, Method, parse_method, table_rows
from ..results import Record
from .paired import Comparison, Run, compare_methods, stored_predictions
from .render import README_MARK, build_table, markdown_safe, outside_losses, render, with_protocol
from .stats import Interval, aggregate_iqm, probability_of_improvement, stratified_bootstrap


@dataclass
class SummaryRow:
    label: str
    profile: str
    tasks: int
    runs: int
    interval: Interval

    def text(self) -> str:
        i = self.interval
        return f"{100 * i.estimate:.1f} [{100 * i.low:.1f}, {100 * i.high:.1f}]"


def _tasks(records: list[Record], metric: str) -> dict[tuple[str, str, str], np.ndarray]:
    cells: dict[tuple[str, str, str], list[float]] = {}
    for r in records:
        value = getattr(r, metric)
        if value is not None:
            cells.setdefault((r.dataset, r.teacher or "", r.student or ""), []).append(value)
    return {key: np.array(values) for key, values in cells.items()}


def _by_setting(records: list[Record]) -> dict[tuple[str, str], list[Record]]:
    """Records by (profile, protocol): runs of either kind apart are different experiments."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.profile or "unknown", r.protocol), []).append(r)
    return groups


def method_iqm(board: list[Record], metric: str = "oa") -> list[SummaryRow]:
    rows = []
    for row in table_rows(4, extra_losses=outside_losses(board)):
        for (profile, protocol), records in sorted(_by_setting([r for r in board if row.matches(r)]).items()):
            tasks = list(_tasks(records, metric).values())
            if tasks:
                interval = stratified_bootstrap(aggregate_iqm, tasks)
                rows.append(SummaryRow(with_protocol(row.label, protocol), profile, len(tasks), sum(map(len, tasks)),
                                       interval))
    return rows


def sembridge_improvement(board: list[Record], metric: str = "oa") -> list[SummaryRow]:
    rows = []
    losses = sorted({parse_method(r.method).loss for r in board
                     if r.method not in ("teacher", "none") and not r.ablation} - {None})
    for loss in losses:
        alone, combined = Method(loss), Method(loss, True)
        pick = {name: [r for r in board if r.method == name and not r.ablation and r.teacher == "R"
                       and r.student == "R"] for name in (alone.name, combined.name)}
        alone_settings, combined_settings = _by_setting(pick[alone.name]), _by_setting(pick[combined.name])
        for setting in sorted(set(alone_settings) & set(combined_settings)):
            x, y = _tasks(combined_settings[setting], metric), _tasks(alone_settings[setting], metric)
            shared = sorted(set(x) & set(y))
            if shared:
                interval = stratified_bootstrap(probability_of_improvement, [x[k] for k in shared], [y[k] for k in shared])
                runs = sum(len(x[k]) + len(y[k]) for k in shared)
                label = with_protocol(f"SemBridge + {alone.display} over {alone.display}", setting[1])
                rows.append(SummaryRow(label, setting[0], len(shared), runs, interval))
    return rows


@dataclass
class PairedSection:
    """One table's question, answered per cell by paired comparisons A - B."""

    table: int
    title: str
    comparisons: list[Comparison]


def paired_sections(board: list[Record], store: Path | None) -> list[PairedSection]:
    """Each table's comparisons in every cell (dataset version, pair, profile, protocol, epochs) that
    holds both sides, paired by seed, and by test item where `store` (the board's predictions folder)
    holds both runs' files: Table 3, SemBridge against the student alone; Table 4, SemBridge against
    each loss; Table 5, SemBridge + X against X; Table 6, SemBridge against each ablation."""
    runs = [stored_predictions(store, r) if store is not None else Run(r, None) for r in board]
    extra = outside_losses(board)
    losses, combined, ablated = table_rows(4, extra_losses=extra), table_rows(5, extra_losses=extra), table_rows(6)
    questions = [  # (table, its question, the comparisons that answer it, the pairs the table shows), from its rows
        (3, "Table 3: SemBridge against the student alone", [(SEMBRIDGE, "none")], None),
        (4, "Table 4: SemBridge against each distillation loss",
         [(SEMBRIDGE, row.method) for row in losses if row.method != SEMBRIDGE], None),
        (5, "Table 5: SemBridge + X against X",
         [(with_it.method, alone.method) for alone, with_it in zip(combined[::2], combined[1::2])], combined[0].pairs),
        (6, "Table 6: SemBridge against SemBridge without one part",
         [(SEMBRIDGE, f"{SEMBRIDGE}:{row.ablation}") for row in ablated if row.ablation], ablated[0].pairs),
    ]
    return [PairedSection(table, title, [c for a, b in pairs for c in compare_methods(runs, a, b)
                                         if shown is None or c.setting["pair"] in shown])
            for table, title, pairs, shown in questions]


PAIRED_NOTE = ("difference A - B in points, with its 95% interval over seeds and, where the board holds the runs' "
               "predictions, test items; detectable: the smallest difference the cell's design finds with 80% power")


def reading(section: PairedSection) -> str:
    """What the section's OA differences say: which are real (interval excludes 0), and that the
    others are not differences the design can tell from none."""
    scored = [c for c in section.comparisons if "oa" in c.estimates]
    if not scored:
        return ""
    real = [c for c in scored if c.estimates["oa"].resolved]
    detectable = sorted(100 * c.estimates["oa"].mdd for c in scored)
    told = "; ".join(f"{c.a} - {c.b} on {c.setting['dataset']} {c.setting['pair']} "
                     f"{100 * c.estimates['oa'].difference:+.1f}" for c in real)
    if len(scored) == 1:
        text = "OA: the difference is " + ("real (its interval excludes 0)." if real else "not real (its interval holds 0).")
    elif not real:
        text = f"OA: none of the {len(scored)} differences is real (every interval holds 0)."
    else:
        text = f"OA: {len(real)} of {len(scored)} differences are real (interval excludes 0): {told}."
        if len(real) < len(scored):
            text += f" The other {len(scored) - len(real)} are not told apart from no difference."
    span = f"{detectable[0]:.1f}" if len(detectable) == 1 else f"{detectable[0]:.1f} to {detectable[-1]:.1f}"
    text += f" {'This design detects' if len(detectable) == 1 else 'These designs detect'} {span} points."
    if any(len(c.seeds) < 2 for c in scored):
        text += " Where a cell has one seed, its interval counts the test items drawn, not training."
    return text


def render_paired(section: PairedSection, fmt: str = "md") -> str:
    rows = []
    for c in section.comparisons:
        design = f"{len(c.seeds)} seeds x {c.items} items" if c.paired_by_item else f"{len(c.seeds)} seeds, seeds only"
        cells = [f"{c.a} - {c.b}", c.setting["dataset"], c.setting["pair"], c.setting["profile"], design]
        cells += [c.estimates[m].text() if m in c.estimates else "–" for m in ("oa", "f1")]
        rows.append(cells)
    head = ["comparison", "dataset", "pair", "profile", "design", "OA difference", "F1 difference"]
    title = f"{section.title} ({PAIRED_NOTE})"
    summary = reading(section)
    if fmt == "html":
        body = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in row) + "</tr>" for row in rows) \
            or f'<tr><td colspan="{len(head)}">no cell holds both yet</td></tr>'
        return (f'<table class="summary" id="paired-table-{section.table}"><caption>{html.escape(title)}</caption>'
                "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + f"</tr></thead><tbody>{body}</tbody></table>"
                + (f'<p class="note">{html.escape(summary)}</p>' if summary else ""))
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    lines += ["| " + " | ".join(markdown_safe(x) for x in row) + " |" for row in rows]
    lines += ["", markdown_safe(summary)] if summary else []
    return "\n".join(lines if rows else lines[:1] + ["", "no cell holds both yet"])


def render_summary(board: list[Record], fmt: str = "md", store: Path | None = None) -> str:
    """The summaries as Markdown (for `leaderboard show --stats`) or HTML tables (for the site);
    `store`: the board's predictions (board.predictions_store), for the paired comparisons."""
    sections = [
        ("IQM of test OA across cells (%, stratified-bootstrap 95% interval)", method_iqm(board), "IQM"),
        ("Probability that SemBridge + X beats X (R/R, across datasets; 95% interval over seeds only)",
         sembridge_improvement(board), "P(improvement)"),
    ]
    out = []
    for title, rows, column in sections:
        if fmt == "html":
            body = "".join(
                f"<tr><td>{html.escape(r.label)}</td><td>{html.escape(r.profile)}</td><td>{r.tasks}</td>"
                f"<td>{r.runs}</td><td data-value=\"{r.interval.estimate:.6f}\">{html.escape(_text(r, column))}</td></tr>"
                for r in rows) or "<tr><td colspan=\"5\">no runs yet</td></tr>"
            out.append(f"<table class=\"summary\"><caption>{html.escape(title)}</caption><thead><tr><th>method</th>"
                       f"<th>profile</th><th>cells</th><th>runs</th><th>{column}</th></tr></thead>"
                       f"<tbody>{body}</tbody></table>")
        else:
            lines = [f"**{title}**", "", f"| method | profile | cells | runs | {column} |", "|---|---|---|---|---|"]
            lines += [f"| {r.label} | {r.profile} | {r.tasks} | {r.runs} | {_text(r, column)} |" for r in rows]
            out.append("\n".join(lines if rows else lines[:1] + ["", "no runs yet"]))
    out += [render_paired(section, fmt) for section in paired_sections(board, store)]
    return "\n\n".join(out)


def _text(row: SummaryRow, column: str) -> str:
    if column == "IQM":
        return row.text()
    i = row.interval
    return f"{i.estimate:.2f} [{i.low:.2f}, {i.high:.2f}]"


def readme(board: list[Record], store: Path | None = None) -> str:
    """The board's README: Tables 3-6, then each table's paired comparisons per cell (by test item
    where `store`, the board's predictions folder, holds both runs')."""

    parts = [README_MARK, "# leaderboard", "",
             "Regenerated by `ackd-bench leaderboard submit` from `leaderboard.csv` (one row per run; schema in",
             "`ackd_bench/results.py`). Metrics are stored as fractions and shown in percent. Rows of the synthetic",
             "`toy` benchmark are its own column block and never mixed with the real datasets. `[paper]` rows are",
             "the paper's own numbers (`baselines/paper_results.csv`), of the reference protocol: the best epoch on",
             "the split it was selected on. Board rows report a held-out test split unless they say otherwise.",
             "Accepted dataset versions are listed in `ackd_bench/resources/leaderboard/dataset_versions.csv`.", ""]
    return "\n".join(parts) + "\n" + tables_markdown(board, store)


def tables_markdown(board: list[Record], store: Path | None = None, datasets: list[str] | None = None,
                    with_paper: bool = True) -> str:
    """Tables 3-6 of `datasets` (all: None), then each table's paired comparisons per cell."""
    if datasets is not None:
        board = [r for r in board if r.dataset in datasets]
    parts = [render(build_table(number, board, datasets=datasets, with_paper=with_paper), "md")
             for number in (3, 4, 5, 6)]
    parts += [render_paired(section, "md") for section in paired_sections(board, store)]
    return "\n\n".join(parts) + "\n"
