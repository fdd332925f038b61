"""Test OA per teacher/student pair for each of Table 4's rows (the student alone, every
distillation loss, SemBridge), one panel per dataset, with each bar's 95% t-interval over seeds (PNG)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.splits import PROTOCOLS
from ..errors import AckdError
from ..experiment import PAIRS, Row, table_rows
from ..results import Record
from .render import one_setting, outside_losses, with_protocol
from .stats import t_interval


@dataclass(frozen=True)
class Bars:
    """One method's bars on one dataset: per pair, the mean OA (%), its 95% t-interval's half-width
    (0 with one seed) and the seeds behind it; NaN where the pair has no run."""

    label: str
    means: tuple[float, ...]
    half_widths: tuple[float, ...]
    seeds: tuple[int, ...]


def _bars_of(row: Row, label: str, records: list[Record]) -> Bars | None:
    means, halves, seeds = [], [], []
    for pair in PAIRS:
        runs = one_setting([r for r in records if row.matches(r, pair)])  # as a table cell: one length
        values = np.array([100 * r.oa for r in runs])
        interval = t_interval(values)
        means.append(float(values.mean()) if len(values) else np.nan)
        halves.append(interval.high - interval.estimate if interval else 0.0)
        seeds.append(len(values))
    if not any(seeds):
        return None
    return Bars(label, tuple(means), tuple(halves), tuple(seeds))


def oa_bars(board: list[Record], dataset: str) -> list[Bars]:
    """The bars of `dataset`'s panel: the student alone, then Table 4's rows in its order. As in
    the tables, each profile and reporting protocol is its own series, so a bar never averages
    runs of two of them."""
    records = [r for r in board if r.dataset == dataset and not r.ablation]
    profiles = sorted({r.profile or "" for r in records})
    rows = [Row("student alone", "none", PAIRS), *table_rows(4, extra_losses=outside_losses(board))]
    found = []
    for row in rows:
        for profile in profiles:
            for protocol in PROTOCOLS:
                label = with_protocol(row.label + (f" ({profile})" if len(profiles) > 1 else ""), protocol)
                chosen = [r for r in records if (r.profile or "") == profile and r.protocol == protocol]
                found.append(_bars_of(row, label, chosen))
    return [bars for bars in found if bars is not None]


def plot_oa(board: list[Record], out: str | Path) -> Path:
    out = Path(out)
    if out.is_dir():  # the path reported is the path written
        out = out / "leaderboard_oa.png"
    elif not out.suffix:
        out = out.with_name(out.name + ".png")
    if not out.parent.is_dir():
        raise AckdError(f"--out {out}: folder {out.parent} does not exist")
    datasets = sorted({r.dataset for r in board if r.method != "teacher"})
    panels = [(d, oa_bars(board, d)) for d in datasets]
    panels = [(d, bars) for d, bars in panels if bars]
    if not panels:
        raise AckdError("nothing to plot: the board holds no student runs (submit some first)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 4.2 * len(panels)), squeeze=False)
    for ax, (dataset, series) in zip(axes[:, 0], panels):
        width = 0.8 / len(series)
        colours = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
        for k, bars in enumerate(series):
            ax.bar(np.arange(len(PAIRS)) + k * width, bars.means, width, yerr=bars.half_widths, capsize=2,
                   label=bars.label, color=colours(k % colours.N), error_kw={"elinewidth": 0.8})
        ax.set_xticks(np.arange(len(PAIRS)) + width * (len(series) - 1) / 2, PAIRS)
        ax.set_xlabel("teacher/student pair")
        finite = [m - h for bars in series for m, h in zip(bars.means, bars.half_widths) if np.isfinite(m)]
        ax.set_ylim(max(0.0, 5 * np.floor(min(finite) / 5) - 5), 100)
        seeds = sorted({n for bars in series for n in bars.seeds if n})
        spread = "one seed, no interval" if seeds == [1] else \
            f"mean over {'/'.join(map(str, seeds))} seeds with its 95% t-interval"
        ax.set_title(f"{dataset}{' (synthetic)' if dataset == 'toy' else ''}: test OA, {spread}")
        ax.set_ylabel("test OA (%)")
        ax.legend(fontsize=8, ncol=1, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
