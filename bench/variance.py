"""How much of the spread between seeds is training and how much is which test images were drawn,
and what difference a design can detect: none, KD and SemBridge on toy v2 (109 RGB test images)
and the current toy (3,000), from the runs' saved per-item predictions.

Like the demo: one MS teacher and one matcher per toy (the profile's seed), then the S/S student of
each method at every seed. For each method it prints the seed-to-seed std of OA and its parts
(leaderboard/paired.py's variance components of the per-item correctness): the training variance
(seed), the per-run test-item noise (residual / n), and the shared test-set draw (item / n), which
the seed spread cannot show. For each pair of methods it prints the paired difference with its
interval, the detectable difference (80% power, 5% two-sided) at 5 seeds and at the seeds run, the
seeds needed to detect 3 OA points, and each method's wall time per run.

    python bench/variance.py --seeds 10 [--profile demo] [--toys v2 v3] [--runs runs-variance]

toy is synthetic: the figures say what the benchmark can resolve, not what the methods do on real data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

V2_RECIPE = Path(__file__).resolve().parents[1] / "tests" / "data" / "toy-v2.yaml"  # the earlier toy, kept
METHODS = ("none", "kd", "sembridge")
PAIRS = (("sembridge", "kd"), ("sembridge", "none"), ("kd", "none"))


def build(toy: str, data: Path) -> Path:
    from ackd_bench.data.build import build_dataset
    from ackd_bench.data.recipe import Recipe
    from ackd_bench.untrusted import load_yaml

    recipe = None if toy == "v3" else Recipe.from_dict(load_yaml(V2_RECIPE.read_text(), str(V2_RECIPE)), str(V2_RECIPE))
    folder = data / f"toy-{toy}"
    build_dataset("toy", folder, recipe=recipe, progress=False)
    return folder


def selection_margin(run_dir: Path) -> float:
    """Best val OA minus the runner-up epoch's: how much of the validation split decided which epoch
    was tested."""
    import csv

    with open(run_dir / "log.csv", newline="") as handle:
        values = sorted((float(row["val_oa"]) for row in csv.DictReader(handle)), reverse=True)
    return values[0] - values[1] if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="student seeds 0..N-1 per method (default 10)")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--toys", nargs="+", default=["v2", "v3"], choices=["v2", "v3"])
    parser.add_argument("--runs", default="runs-variance")
    parser.add_argument("--data", default="data-variance")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from ackd_bench.data.manifest import read_manifest
    from ackd_bench.harness.evaluate import ensure
    from ackd_bench.leaderboard.paired import compare, correctness, find_runs, variance_components
    from ackd_bench.train.api import RunOptions, train_student
    from ackd_bench.train.request import RunRequest

    options = RunOptions(runs_root=Path(args.runs), device=args.device, progress=False, reuse_finished=True)
    for toy in args.toys:
        dataset = build(toy, Path(args.data))
        teacher = ensure(RunRequest.teacher_run(dataset, "S", profile=args.profile), options)
        matcher = ensure(RunRequest.matcher_run(dataset, "S", profile=args.profile), options)
        seconds: dict[str, list[float]] = {m: [] for m in METHODS}
        for seed in range(args.seeds):
            for method in METHODS:
                started = time.time()
                request = RunRequest.student_run(dataset, "S", method, profile=args.profile, seed=seed,
                                                 teacher=str(teacher), matcher=str(matcher) if method == "sembridge" else None)
                result = train_student(request, options)
                if not result.get("reused"):
                    seconds[method].append(time.time() - started)
                print(f"toy {toy} seed {seed} {method:9s} OA {100 * result['oa']:.1f}", flush=True)
        version = read_manifest(dataset).dataset_version
        runs = [r for r in find_runs(args.runs) if r.record.dataset_version == version and r.record.student == "S"
                and r.record.profile == args.profile and r.record.seed < args.seeds]
        by_method = {m: sorted((r for r in runs if r.record.method == m and not r.record.ablation),
                               key=lambda r: r.record.seed) for m in METHODS}
        n = len(by_method["kd"][0].predictions().item_ids)
        print(f"\ntoy {toy} ({n} RGB test images), S/S, {args.profile} profile, {args.seeds} seeds\n")
        print("| method | OA mean | seed std | training std | per-run item noise | shared test draw | s per run |")
        print("|---|---|---|---|---|---|---|")
        for method, found in by_method.items():
            parts = variance_components(correctness([r.predictions() for r in found]))
            oa = [100 * r.record.oa for r in found]
            per_run = f"{np.mean(seconds[method]):.0f}" if seconds[method] else "–"
            print(f"| {method} | {np.mean(oa):.1f} | {np.std(oa, ddof=1):.2f} | {100 * np.sqrt(parts.seed):.2f} | "
                  f"{100 * np.sqrt(parts.residual / n):.2f} | {100 * np.sqrt(parts.item / n):.2f} | {per_run} |")
        print("\n(std in OA points; seed std^2 = training^2 + per-run item noise^2, up to sampling error)\n")
        margins = [selection_margin(r.predictions_file.parent) for found in by_method.values() for r in found]
        val_n = sum(read_manifest(dataset).counts["rgb"]["val"].values())
        images = sorted(round(m * val_n) for m in margins)
        print(f"Epoch selection on {val_n} validation images: the best epoch beat the runner-up by a median of "
              f"{np.median(images):.0f} images ({100 * np.median(margins):.1f} points); "
              f"{sum(i <= 1 for i in images)} of {len(images)} runs were decided by one image or none\n")
        print("| A - B | difference [95% interval] | detectable, seeds run | detectable at 5 seeds | seeds for 3 points |")
        print("|---|---|---|---|---|")
        for a, b in PAIRS:
            found = compare(by_method[a], by_method[b], a, b, {})
            oa = found.estimates["oa"]
            diffs = correctness([r.predictions() for r in by_method[a]]) - correctness([r.predictions() for r in by_method[b]])
            parts = variance_components(diffs)
            need = parts.seeds_for(0.03, n)
            print(f"| {a} - {b} | {100 * oa.difference:+.1f} [{100 * oa.low:+.1f}, {100 * oa.high:+.1f}] | "
                  f"{100 * oa.mdd:.1f} | {100 * parts.mdd(5, n):.1f} | {need if need else 'not reachable'} |")
        print(flush=True)


if __name__ == "__main__":
    main()
