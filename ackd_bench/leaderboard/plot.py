"""OA per teacher/student pair per method, one panel per dataset (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.splits import PROTOCOLS
from ..errors import AckdError
from ..experiment import PAIRS
from ..results import Record
from .render import with_protocol


def plot_oa(board: list[Record], out: str | Path, methods: list[str] | None = None) -> Path:
    out = Path(out)
    if out.is_dir():  # the path reported is the path written
        out = out / "leaderboard_oa.png"
    elif not out.suffix:
        out = out.with_name(out.name + ".png")
    if not out.parent.is_dir():
        raise AckdError(f"--out {out}: folder {out.parent} does not exist")
    students = [r for r in board if r.method != "teacher"]
    if not students:
        raise AckdError("nothing to plot: the board holds no student runs (submit some first)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r.dataset for r in students})
    methods = methods or sorted({r.method for r in students if not r.ablation})
    # a bar never averages runs of two reporting protocols: each of a method's protocols is its own series
    series = [(m, p) for m in methods for p in PROTOCOLS
              if p == "heldout" or any(r.method == m and r.protocol == p for r in students)]
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(6 * max(1, len(datasets)), 4), squeeze=False)
    width = 0.8 / max(1, len(series))
    for ax, dataset in zip(axes[0], datasets):
        for k, (method, protocol) in enumerate(series):
            means, errors = [], []
            for pair in PAIRS:
                t, s = pair.split("/")
                values = [100 * r.oa for r in students if r.dataset == dataset and r.method == method
                          and r.protocol == protocol and not r.ablation and r.student == s and (r.teacher or t) == t]
                means.append(np.mean(values) if values else np.nan)
                errors.append(np.std(values, ddof=1) if len(values) > 1 else 0.0)
            ax.bar(np.arange(len(PAIRS)) + k * width, means, width, yerr=errors, label=with_protocol(method, protocol),
                   capsize=2)
        ax.set_xticks(np.arange(len(PAIRS)) + width * (len(series) - 1) / 2, PAIRS)
        ax.set_title(dataset + (" (synthetic)" if dataset == "toy" else ""))
        ax.set_ylabel("test OA (%)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
