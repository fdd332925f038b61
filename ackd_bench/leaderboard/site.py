"""`ackd-bench leaderboard site --out DIR`: the board as one self-contained page.

DIR/index.html has no outside references. It shows:

- for each dataset, Tables 3-6 with the paper's rows, sortable by a click on a column header (or
  by a `#sort=TABLE_ID:COLUMN` link);
- the OA plot, embedded as a PNG;
- the across-cell statistics;
- under each table, the runs behind every board row: profile, seeds, code versions, teacher
  checkpoints, and the method's paper and code.

Every string that came from a submission is HTML-escaped, and links are https URLs that
validation has already checked.
"""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

from .. import __version__
from ..errors import AckdError
from ..experiment import TABLES
from ..provenance import atomic_path
from ..results import Record
from ..untrusted import plain_name
from .plot import plot_oa
from .render import MIN_SEEDS, PAPER_DATASETS, Table, build_table, render
from .summary import render_summary

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; cursor: pointer; user-select: none; }
caption { font-weight: 600; text-align: left; padding: .3em 0; }
td b { color: #0a5; }
details { margin: .2em 0 1.5em; } summary { cursor: pointer; color: #555; }
img { max-width: 100%; border: 1px solid #ddd; }
.note { color: #555; max-width: 60em; }
"""

SCRIPT = """
function cellKey(td) { const v = parseFloat(td.textContent); return isNaN(v) ? -Infinity : v; }
function sortTable(table, column, descending) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => column === 0
    ? a.cells[0].textContent.localeCompare(b.cells[0].textContent) * (descending ? -1 : 1)
    : (cellKey(b.cells[column]) - cellKey(a.cells[column])) * (descending ? 1 : -1));
  rows.forEach(r => body.appendChild(r));
  table.dataset.sorted = column + (descending ? ":desc" : ":asc");
}
document.querySelectorAll("table.board").forEach(table => {
  table.querySelectorAll("thead th").forEach((th, column) => th.addEventListener("click", () => {
    const descending = th.dataset.order !== "desc";
    th.dataset.order = descending ? "desc" : "asc";
    sortTable(table, column, descending);
  }));
});
const wanted = /^#sort=([\\w-]+):(\\d+)$/.exec(decodeURIComponent(location.hash));
if (wanted && document.getElementById(wanted[1])) sortTable(document.getElementById(wanted[1]), Number(wanted[2]), true);
document.body.dataset.ready = "1";
"""


def _plot(board: list[Record], dataset: str) -> str:
    rows = [r for r in board if r.dataset == dataset]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            png = plot_oa(rows, Path(tmp) / "oa.png")
        except AckdError:  # no student runs for this dataset yet
            return ""
        data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<img alt="test OA per pair and method on {html.escape(dataset)}" src="data:image/png;base64,{data}">'


def _link(url: str | None, text: str) -> str:
    return f'<a href="{html.escape(url, quote=True)}">{text}</a>' if url else ""


def _runs_behind(table: Table) -> str:
    rows = []
    for detail in table.details:
        if detail.source != "board":
            continue
        records = detail.records
        seeds = ", ".join(str(s) for s in sorted({r.seed for r in records}))
        versions = ", ".join(sorted({r.code_version for r in records}))
        teachers = ", ".join(sorted({(r.teacher_sha256 or "")[:12] for r in records} - {""})) or "–"
        first = records[0]
        links = " ".join(x for x in (_link(first.paper_url, "paper"), _link(first.code_url, "code")) if x)
        rows.append(f"<tr><td>{html.escape(detail.label)}</td><td>{html.escape(detail.profile or '')}</td>"
                    f"<td>{len(records)}</td><td>{html.escape(seeds)}</td><td>{html.escape(versions)}</td>"
                    f"<td>{html.escape(teachers)}</td><td>{links or '–'}</td></tr>")
    if not rows:
        return ""
    return ("<details><summary>runs behind these rows</summary><table class=\"runs\"><thead><tr><th>row</th>"
            "<th>profile</th><th>runs</th><th>seeds</th><th>code version</th><th>teacher checkpoint (sha256)</th>"
            "<th>method</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></details>")


def _table_html(table: Table, table_id: str) -> str:
    text = render(table, "html")
    table_id = html.escape(table_id, quote=True)
    return text.replace("<table>", f'<table class="board" id="{table_id}">', 1).replace(
        "<table>", f'<table class="board" id="{table_id}-incomplete">', 1)


def site_page(board: list[Record], datasets: list[str] | None = None, min_seeds: int = MIN_SEEDS,
              store: Path | None = None) -> str:
    present = sorted({r.dataset for r in board}, key=lambda d: (d in PAPER_DATASETS, d))
    datasets = [plain_name(d, "--dataset") for d in datasets] if datasets else \
        present + [d for d in PAPER_DATASETS if d not in present]
    sections = []
    for dataset in datasets:
        parts = [f'<h2 id="{html.escape(dataset, quote=True)}">{html.escape(dataset)}'
                 + (" (synthetic)" if dataset == "toy" else "") + "</h2>"]
        for number in TABLES:
            table = build_table(number, board, datasets=[dataset], min_seeds=min_seeds)
            parts += [_table_html(table, f"{dataset}-table-{number}"), _runs_behind(table)]
        parts.append(_plot(board, dataset))
        sections.append("\n".join(p for p in parts if p))
    nav = " · ".join(f'<a href="#{html.escape(d, quote=True)}">{html.escape(d)}</a>' for d in datasets)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ACKD leaderboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body>
<h1>ACKD leaderboard</h1>
<p class="note">Test OA and macro-F1 (%) of the paper's Tables 3-6 on each benchmark, from the runs
submitted to this board ({len(board)} runs), with the paper's own numbers as <code>[paper]</code> rows.
A cell is mean ± std (n) over seeds. A value is bold only when its 95% t-interval lies above every other
complete row's. A row is complete with at least {min_seeds} seeds in each of its cells; the others are
listed under each table. Every row names the training profile that produced it. A row reports a held-out
test split unless it says <i>reference protocol</i>: the best epoch on the split it was selected on, as the
paper's code does and as every <code>[paper]</code> row is. Click a column header to sort.</p>
<p>{nav} · <a href="#statistics">statistics</a></p>
{"".join(sections)}
<h2 id="statistics">Across cells</h2>
{render_summary(board, "html", store)}
<p class="note">Generated by ackd-bench {html.escape(__version__)}.</p>
<script>{SCRIPT}</script>
</body></html>
"""


def write_site(board: list[Record], out_dir: str | Path, datasets: list[str] | None = None,
               min_seeds: int = MIN_SEEDS, store: Path | None = None) -> Path:
    """The board as one HTML page; `store`: the board's predictions, for the paired comparisons."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = site_page(board, datasets, min_seeds, store)
    with atomic_path(out / "index.html") as tmp:
        tmp.write_text(page)
    return out / "index.html"
