"""`ackd-bench demo`: the whole pipeline on the embedded toy benchmark, in minutes on a CPU.

Builds toy, trains the MS teacher and the SSM matcher once, then runs the RGB student alone
(`none`), with vanilla KD and with SemBridge on one teacher/student pair for each of a few student
seeds, and prints the Table-3 layout (mean ± std over the seeds) and, for each pair of methods, the
paired OA difference with its 95% interval over seeds and test images and the design's detectable
difference. A short schedule on toy varies by points from seed to seed: a difference is called real
only when its interval excludes 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.build import build_dataset
from ..experiment import parse_pairs
from ..leaderboard.paired import Run, compare
from ..leaderboard.render import build_table, render
from ..results import read_result
from ..train.api import RunOptions
from ..train.request import RunRequest
from .evaluate import ensure, run_eval
from .plan import RunPlan

DEMO_METHODS = ("kd", "sembridge", "none")
# 2 student seeds fit in about 3 minutes on 2 CPU cores (the teacher and matcher are trained once)
DEMO_SEEDS = 2
NAMES = {"kd": "KD", "sembridge": "SemBridge", "none": "none"}
STEPS = {"kd": "vanilla KD", "sembridge": "SemBridge", "none": "the student alone"}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for a single value)."""
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def verdict_lines(runs: list[Run]) -> list[str]:
    """Each pair of methods' paired OA difference with its interval and the design's detectable
    difference (leaderboard/paired.py); a difference is called real only when its interval excludes 0."""
    lines = []
    for a, b in (("sembridge", "none"), ("sembridge", "kd"), ("kd", "none")):
        pick = {m: [r for r in runs if r.record.method == m] for m in (a, b)}
        found = compare(pick[a], pick[b], NAMES[a], NAMES[b], {}) if pick[a] and pick[b] else None
        oa = found.estimates.get("oa") if found else None
        if oa is None or len(found.seeds) < 2:
            lines.append(f"{NAMES[a]} - {NAMES[b]}: one seed measures no training variance, so no difference can be "
                         "called real; run --seeds 2 or more")
            continue
        verdict = "real" if oa.resolved else "not resolved"
        lines.append(f"{NAMES[a]} - {NAMES[b]} {oa.text()}: {verdict}")
    seeds = max((len(c) for c in [[r for r in runs if r.record.method == m] for m in DEMO_METHODS]), default=0)
    items = runs[0].record.n_test if runs else 0
    return [f"Paired OA differences in points ({seeds} seeds x {items} test images, 95% interval over seeds and "
            "test images; detectable: the smallest difference this design finds with 80% power):",
            *(f"  {line}" for line in lines),
            "  A difference is real only when its interval excludes 0; smaller differences than the detectable one "
            "are often missed."]


def run_demo(root: str | Path = "data", runs_root: str | Path = "runs", pair: str = "S/S", profile: str = "demo",
             seeds: int = DEMO_SEEDS, device: str = "auto", progress: bool = True, threads: int | None = None,
             recipe=None) -> str:
    """`recipe`: a toy recipe other than the packaged one (the tests' smaller toy)."""
    dataset_dir = Path(root) / "toy"
    build = build_dataset("toy", dataset_dir, recipe=recipe, progress=progress)
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
            records += run_eval(request, pair=pair, plan=RunPlan(matcher_arch="S", options=options))
    # the records as the runs wrote them: run_eval's results add the run's folder, epoch and pair
    board = [read_result(run_dir) for run_dir in [*(r["run_dir"] for r in records), teacher.parent.parent]]
    table = build_table(3, board, datasets=["toy"], with_paper=False, pairs=[pair], min_seeds=1)
    text = render(table, "md")
    if any(r.method == "kd" for r in board):
        (oa_mean, oa_std), (f1_mean, f1_std) = (mean_std([100 * getattr(r, k) for r in board if r.method == "kd"])
                                                for k in ("oa", "f1"))
        n = sum(r.method == "kd" for r in board)
        text += (f"\n| {pair}  Vanilla KD (naive pairing) ({profile} profile) | {oa_mean:.1f} ± {oa_std:.1f} (n={n}) "
                 f"| {f1_mean:.1f} ± {f1_std:.1f} (n={n}) |")
    text += "\n\n" + "\n".join(verdict_lines([Run.in_folder(read_result(r["run_dir"]), r["run_dir"]) for r in records]))
    print(f"[3/3] results (toy is SYNTHETIC; {profile} profile; students over seeds 0-{seeds - 1}, mean ± std; "
          f"the teacher and matcher are one seed's)\n")
    print(text)
    return text
