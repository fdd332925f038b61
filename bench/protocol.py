"""Evidence for docs/FIDELITY.md (issue #27, finding 1): the same runs under the two reporting
protocols, on toy.

For each seed, under `heldout` (train / select on val / report test) and under `reference` (the
paper's code: train on train+val, keep the epoch best on test, report that number): the S/S MS
teacher and the RGB students of each method, every teacher and matcher trained under the student's
protocol. Prints, per method, the test OA of each protocol and their difference, mean ± std over
the seeds (the difference is taken seed by seed).

    python bench/protocol.py [--seeds 0 1 2 3 4] [--methods none kd] [--profile demo] [--set student.epochs=1]

A held-out run's best test epoch is not printed: the engine evaluates one split per epoch, and
finding it would take a test evaluation at every epoch. toy is synthetic: the gap shows how far the
protocols land apart on a short schedule, not its size on the real benchmarks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

def summary(values: list[float]) -> str:
    values = [100 * v for v in values if v is not None]
    if not values:
        return "–"
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="+", default=["none", "kd"])
    parser.add_argument("--pair", default="S/S")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change the profile under both protocols, e.g. student.epochs=1 (repeatable)")
    parser.add_argument("--runs", default="runs-protocol")
    parser.add_argument("--data", default="data")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from ackd_bench.data.build import build_dataset
    from ackd_bench.harness.evaluate import run_eval
    from ackd_bench.harness.plan import RunPlan
    from ackd_bench.results import read_result
    from ackd_bench.train.api import RunOptions
    from ackd_bench.train.profiles import load_profile
    from ackd_bench.train.request import RunRequest

    dataset_dir = Path(args.data) / "toy"
    build_dataset("toy", dataset_dir, progress=False)
    # heldout is every profile's own: its runs are the profile's, shared with any other use of it
    profiles = {"heldout": load_profile(args.profile, sets=args.set),
                "reference": load_profile(args.profile, sets=[*args.set, "options.protocol=reference"])}
    options = RunOptions(runs_root=Path(args.runs), device=args.device, progress=False, reuse_finished=True)
    oa: dict[tuple[str, str], dict[int, float]] = {}  # (row, protocol) -> seed -> test OA
    for seed in args.seeds:
        for protocol, profile in profiles.items():
            for method in args.methods:
                request = RunRequest.student_run(dataset_dir, "S", method, profile=profile, seed=seed)
                result = run_eval(request, pair=args.pair, plan=RunPlan(matcher_arch="S", options=options))[0]
                oa.setdefault((method, protocol), {})[seed] = result["oa"]
                if result["teacher_run_dir"]:
                    oa.setdefault(("teacher (MS)", protocol), {})[seed] = read_result(result["teacher_run_dir"]).oa
                print(f"seed {seed} {protocol:9s} {method:10s} OA {100 * result['oa']:.1f}", flush=True)

    rows = sorted({row for row, _ in oa}, key=lambda r: (r != "teacher (MS)", r))
    print(f"\nTest OA on toy, {args.pair}, profile {args.profile}{' with ' + ', '.join(args.set) if args.set else ''}, "
          f"{len(args.seeds)} seed(s) (%, mean ± std)\n")
    print("| method | heldout OA | reference OA | reference − heldout |")
    print("|---|---|---|---|")
    for row in rows:
        held, ref = oa.get((row, "heldout"), {}), oa.get((row, "reference"), {})
        gaps = [ref[s] - held[s] for s in args.seeds if s in held and s in ref]
        print(f"| {row} | {summary(list(held.values()))} | {summary(list(ref.values()))} | {summary(gaps)} |")


if __name__ == "__main__":
    main()
