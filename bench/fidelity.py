"""Evidence for docs/FIDELITY.md: the `paper` and `bench` profiles, and the two matcher losses, on toy.

For each seed, under each profile's options (with the demo's short toy schedule, so that it runs
on a CPU): the MS teacher, the SSM matcher, and the S/S student alone, with vanilla KD and with
SemBridge. Separately, the matcher's top-1 pair retrieval on MS val with each matcher loss, every
other choice the `bench` profile's. Prints mean ± std over the seeds and, per profile, the paired
differences (leaderboard/paired.py: by seed and test item from the runs' per-item predictions, with
a 95% interval and the design's detectable difference) of SemBridge against KD and the student
alone, and of KD against the student alone (and, with --ablations, of SemBridge against each of its
ablations). A seed's runs share its teacher and matcher. The 5-seed comparison:

    python bench/fidelity.py --seeds 0 1 2 3 4

    python bench/fidelity.py [--seeds 0 1 2] [--pair S/S] [--runs runs-fidelity] [--device auto]

`--ablations` also runs SemBridge without each of its parts, one at a time, under both profiles:
SSM (naive pairing instead), DynM (no re-matching), L_ot1 (the Planner and the CORAL of its
re-weighted tokens) and L_ot2 (the CORAL of pooled features), on the same teachers and matchers.

toy is synthetic: the numbers show whether each profile trains and how far apart the choices
land, not what they do on the real benchmarks.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

# the demo's schedule (recipes/profiles/demo.yaml) over each profile's options
TOY_SCHEDULE = """
teacher: {lr: 2.0e-3, batch_size: 16, epochs: 6}
student: {lr: 2.0e-3, batch_size: 16, epochs: 8}
matcher: {batch_size: 16, epochs: 10}
"""
VARIANTS = {
    "toy-paper": "extends: paper\n",
    "toy-bench": "extends: bench\n",
    "toy-bench-reference-matcher": "extends: bench\noptions: {matcher_loss: reference}\n",
}


def write_variants(directory: Path) -> None:
    for name, head in VARIANTS.items():
        (directory / f"{name}.yaml").write_text(head + TOY_SCHEDULE)


def summary(values: list[float]) -> str:
    values = [100 * v for v in values if v is not None]
    if not values:
        return "–"
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pair", default="S/S")
    parser.add_argument("--runs", default="runs-fidelity")
    parser.add_argument("--data", default="data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ablations", action="store_true", help="also SemBridge without SSM, DynM, L_ot1, L_ot2")
    args = parser.parse_args()

    profiles_dir = Path(tempfile.mkdtemp(prefix="ackd-fidelity-profiles-"))
    write_variants(profiles_dir)
    os.environ["ACKD_BENCH_PROFILES"] = str(profiles_dir)

    from ackd_bench.data.build import build_dataset
    from ackd_bench.experiment import ABLATIONS
    from ackd_bench.harness.evaluate import run_eval
    from ackd_bench.harness.plan import RunPlan
    from ackd_bench.train.api import RunOptions, train_matcher
    from ackd_bench.train.request import RunRequest

    dataset_dir = Path(args.data) / "toy"
    build_dataset("toy", dataset_dir, progress=False)
    options = RunOptions(runs_root=Path(args.runs), device=args.device, progress=False, reuse_finished=True)
    students: dict[tuple[str, str], list[dict]] = {}
    matchers: dict[str, list[float]] = {}
    for seed in args.seeds:
        for profile in ("toy-paper", "toy-bench"):
            ablations = [(a,) for a in ABLATIONS] if args.ablations else []
            for method, ablation in [(m, ()) for m in ("none", "kd", "sembridge")] + [("sembridge", a) for a in ablations]:
                request = RunRequest.student_run(dataset_dir, "S", method, profile=profile, seed=seed, ablation=ablation)
                record = run_eval(request, pair=args.pair, plan=RunPlan(matcher_arch="S", options=options))[0]
                method = method + "".join(f" -{a}" for a in ablation)
                students.setdefault((profile, method), []).append(record)
                print(f"seed {seed} {profile:10s} {method:10s} OA {100 * record['oa']:.1f} F1 {100 * record['f1']:.1f}",
                      flush=True)
        for loss, profile in (("reference", "toy-bench-reference-matcher"), ("normalised", "toy-bench")):
            result = train_matcher(RunRequest.matcher_run(dataset_dir, "S", profile=profile, seed=seed), options)
            matchers.setdefault(loss, []).append(result["val_top1"])
            print(f"seed {seed} matcher {loss:10s} top-1 {100 * result['val_top1']:.1f}", flush=True)

    n = len(args.seeds)
    print(f"\nStudents on toy, {args.pair}, {n} seeds (OA / macro-F1 in %, mean ± std)\n")
    print("| method | paper OA | paper F1 | bench OA | bench F1 |")
    print("|---|---|---|---|---|")
    for method in dict.fromkeys(method for _, method in students):
        cells = [summary([r[m] for r in students[(p, method)]]) for p in ("toy-paper", "toy-bench") for m in ("oa", "f1")]
        print(f"| {method} | " + " | ".join(cells) + " |")
    from ackd_bench.leaderboard.paired import compare_methods, find_runs

    runs = [r for r in find_runs(args.runs) if r.record.seed in args.seeds and r.record.student == args.pair[-1]]
    pairs = [("sembridge", "kd"), ("sembridge", "none"), ("kd", "none")]
    pairs += [("sembridge", f"sembridge:{a}") for a in ABLATIONS] if args.ablations else []
    print(f"\nPaired differences A - B in OA and macro-F1 points ({n} seeds x the test split; 95% interval over "
          "seeds and test items; detectable: 80% power at 5%)\n")
    print("| profile | A - B | OA difference [95%] (detectable) | F1 difference [95%] (detectable) |")
    print("|---|---|---|---|")
    for profile in ("toy-paper", "toy-bench"):
        mine = [r for r in runs if r.record.profile == profile]
        for a, b in pairs:
            for found in compare_methods(mine, a, b):
                print(f"| {profile.removeprefix('toy-')} | {a} - {b} | {found.estimates['oa'].text()} | "
                      f"{found.estimates['f1'].text()} |")
    print(f"\nMatcher top-1 pair retrieval on toy MS val ({n} seeds, bench options otherwise)\n")
    print("| matcher loss | top-1 % |")
    print("|---|---|")
    for loss, values in matchers.items():
        print(f"| {loss} | {summary(values)} |")


if __name__ == "__main__":
    main()
