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

from ..experiment import Method, parse_method, table_rows
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


def sembridge_paired(board: list[Record], store: Path | None) -> list[Comparison]:
    """SemBridge + X against X in each cell (dataset version, pair, profile, protocol, epochs) that
    holds both, paired by seed, and by test item where the board's store holds both runs' predictions."""
    runs = [stored_predictions(store, r) if store is not None else Run(r, None) for r in board]
    losses = sorted({parse_method(r.method).loss for r in board if r.sembridge and not r.ablation} - {None})
    return [c for loss in losses for c in compare_methods(runs, Method(loss, True).name, loss)]


PAIRED_TITLE = ("SemBridge + X against X, per cell (difference in points, 95% interval over seeds and, where the "
                "board holds the runs' predictions, test items; detectable: the smallest difference the cell's "
                "design finds with 80% power)")


def render_paired(comparisons: list[Comparison], fmt: str = "md") -> str:
    rows = []
    for c in comparisons:
        design = f"{len(c.seeds)} seeds x {c.items} items" if c.paired_by_item else f"{len(c.seeds)} seeds, seeds only"
        cells = [f"{c.a} - {c.b}", c.setting["dataset"], c.setting["pair"], c.setting["profile"], design]
        cells += [c.estimates[m].text() if m in c.estimates else "–" for m in ("oa", "f1")]
        rows.append(cells)
    head = ["comparison", "dataset", "pair", "profile", "design", "OA difference", "F1 difference"]
    if fmt == "html":
        body = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in row) + "</tr>" for row in rows) \
            or f'<tr><td colspan="{len(head)}">no cell holds both yet</td></tr>'
        return (f'<table class="summary"><caption>{html.escape(PAIRED_TITLE)}</caption><thead><tr>'
                + "".join(f"<th>{h}</th>" for h in head) + f"</tr></thead><tbody>{body}</tbody></table>")
    lines = [f"**{PAIRED_TITLE}**", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    lines += ["| " + " | ".join(markdown_safe(x) for x in row) + " |" for row in rows]
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
    out.append(render_paired(sembridge_paired(board, store), fmt))
    return "\n\n".join(out)


def _text(row: SummaryRow, column: str) -> str:
    if column == "IQM":
        return row.text()
    i = row.interval
    return f"{i.estimate:.2f} [{i.low:.2f}, {i.high:.2f}]"


def readme(board: list[Record], store: Path | None = None) -> str:
    """The board's README: Tables 3-6, then SemBridge + X against X per cell, paired (by test item
    where `store`, the board's predictions folder, holds both runs')."""

    parts = [README_MARK, "# leaderboard", "",
             "Regenerated by `ackd-bench leaderboard submit` from `leaderboard.csv` (one row per run; schema in",
             "`ackd_bench/results.py`). Metrics are stored as fractions and shown in percent. Rows of the synthetic",
             "`toy` benchmark are its own column block and never mixed with the real datasets. `[paper]` rows are",
             "the paper's own numbers (`baselines/paper_results.csv`), of the reference protocol: the best epoch on",
             "the split it was selected on. Board rows report a held-out test split unless they say otherwise.",
             "Accepted dataset versions are listed in `ackd_bench/resources/leaderboard/dataset_versions.csv`.", ""]
    for number in (3, 4, 5, 6):
        parts += [render(build_table(number, board), "md"), ""]
    parts += [render_paired(sembridge_paired(board, store), "md"), ""]
    return "\n".join(parts)
