"""`ackd-bench demo`: the whole pipeline on the embedded toy benchmark, in minutes on a CPU.

Builds toy, trains the MS teacher and the SSM matcher once, then runs the RGB student alone
(`none`), with vanilla KD and with SemBridge on one teacher/student pair for each of a few student
seeds, and prints the Table-3 layout (mean ± std over the seeds) with one line saying which
differences are within the seeds' noise. A short schedule on toy varies by several points from seed
to seed: one seed would rank the methods by chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.build import build_dataset
from ..experiment import parse_pairs
from ..leaderboard.render import build_table, render
from ..results import read_result
from ..train.api import RunOptions
from ..train.request import RunRequest
from .evaluate import Prerequisites, ensure, run_eval

DEMO_METHODS = ("kd", "sembridge", "none")
# 2 student seeds fit in about 3 minutes on 2 CPU cores (the teacher and matcher are trained once)
DEMO_SEEDS = 2
NAMES = {"kd": "KD", "sembridge": "SemBridge", "none": "none"}
STEPS = {"kd": "vanilla KD", "sembridge": "SemBridge", "none": "the student alone"}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for a single value)."""
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def noise_line(oa: dict[str, list[float]]) -> str:
    """One line comparing the methods' mean OA (in points): a difference counts as within noise when it
    is smaller than the larger of the two methods' std over the seeds."""
    stats = {m: mean_std([100 * v for v in values]) for m, values in oa.items() if values}
    seeds = min((len(values) for values in oa.values() if values), default=0)
    parts, beyond = [], []
    for a, b in (("sembridge", "none"), ("sembridge", "kd"), ("kd", "none")):
        if a in stats and b in stats:
            diff = stats[a][0] - stats[b][0]
            beyond.append(seeds > 1 and abs(diff) >= max(stats[a][1], stats[b][1]))
            parts.append(f"{NAMES[a]} - {NAMES[b]} {diff:+.1f}" + (" (beyond noise)" if beyond[-1] else ""))
    if seeds < 2:
        verdict = "one seed has no std, so no difference can be told from noise"
    else:
        verdict = ("all within noise" if not any(beyond) else "the rest within noise" if not all(beyond) else
                   "none within noise") + " (within noise: smaller than the larger of the two methods' std over seeds)"
    return f"Noise ({seeds} seed{'s' if seeds != 1 else ''}): " + ", ".join(parts) + f" points of OA; {verdict}."


def run_demo(root: str | Path = "data", runs_root: str | Path = "runs", pair: str = "S/S", profile: str = "demo",
             seeds: int = DEMO_SEEDS, device: str = "auto", progress: bool = True, threads: int | None = None) -> str:
    dataset_dir = Path(root) / "toy"
    build = build_dataset("toy", dataset_dir, progress=progress)
    print(f"[1/3] toy benchmark at {dataset_dir} (version {build.manifest.dataset_version[:16]}, {build.status})")
    options = RunOptions(runs_root=Path(runs_root), device=device, progress=progress, threads=threads)
    (teacher_arch, _student_arch), = [p.split("/") for p in parse_pairs(pair)]
    print(f"[2/3] the MS teacher ({teacher_arch}) and SemBridge's matcher (S), once (the {profile} profile's seed)")
    teacher = ensure(RunRequest.teacher_run(dataset_dir, teacher_arch, profile=profile), options)
    matcher = ensure(RunRequest.matcher_run(dataset_dir, "S", profile=profile), options)
    records = []
    for seed in range(seeds):
        for method in DEMO_METHODS:
            print(f"[2/3] {pair} RGB student, seed {seed}: {STEPS[method]}")
            request = RunRequest.student_run(dataset_dir, "S", method, profile=profile, seed=seed, teacher=str(teacher),
                                             matcher=str(matcher) if method == "sembridge" else None)
            records += run_eval(request, pair=pair, prerequisites=Prerequisites(matcher_arch="S"), options=options)
    # the records as the runs wrote them: run_eval's results add the run's folder, epoch and pair
    board = [read_result(run_dir) for run_dir in [*(r["run_dir"] for r in records), teacher.parent.parent]]
    table = build_table(3, board, datasets=["toy"], with_paper=False, pairs=[pair], min_seeds=1)
    text = render(table, "md")
    oa = {m: [r.oa for r in board if r.method == m and r.student] for m in DEMO_METHODS}
    if oa["kd"]:
        (oa_mean, oa_std), (f1_mean, f1_std) = (mean_std([100 * getattr(r, k) for r in board if r.method == "kd"])
                                                for k in ("oa", "f1"))
        n = len(oa["kd"])
        text += (f"\n| {pair}  Vanilla KD (naive pairing) ({profile} profile) | {oa_mean:.1f} ± {oa_std:.1f} (n={n}) "
                 f"| {f1_mean:.1f} ± {f1_std:.1f} (n={n}) |")
    text += "\n\n" + noise_line(oa)
    print(f"[3/3] results (toy is SYNTHETIC; {profile} profile; students over seeds 0-{seeds - 1}, mean ± std; "
          f"the teacher and matcher are one seed's)\n")
    print(text)
    return text
