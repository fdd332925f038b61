"""SemBridge's variants compared on toy with paired statistics: each variant is a profile (a name or
a derived one: a base profile with options changed) and an ablation; every variant's S/S student is
trained at the same seeds from one teacher and one matcher (the base profile's), and each variant is
compared with the first by the paired OA difference over seeds and test images, its 95% interval and
the design's detectable difference (leaderboard/paired.py).

    python bench/variants.py --seeds 8 \\
        --variant balanced=demo --variant argmin=demo+dynm_assignment=argmin
    python bench/variants.py --seeds 8 --variant full=demo --variant no-ot1=demo/ot1 --variant no-ot2=demo/ot2

A variant is NAME=PROFILE[+OPTION=VALUE...][/ABLATION]. toy is synthetic: the figures say what the
variants do on toy, not on the real benchmarks.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml


SCHEDULE_KEYS = ("epochs", "batch_size", "lr")


def derived_profile(base: str, options: dict[str, str], folder: Path, schedule: str | None = None) -> str:
    """`base` with `options` changed (and, with `schedule`, that profile's epochs, batch sizes and
    learning rates: a short schedule under another profile's choices), written as a profile file in
    `folder`; `base` itself when nothing changes."""
    if not options and schedule is None:
        return base
    from ackd_bench.train.profiles import load_profile

    body: dict = {"extends": base, "name": "-".join([base, *(f"{k}-{v}" for k, v in sorted(options.items())),
                                                      *([f"{schedule}-schedule"] if schedule else [])])}
    if options:
        body["options"] = dict(options)
    if schedule is not None:  # its length only: epochs, batch size, learning rate
        short = load_profile(schedule)
        body.update({"seed": short["seed"], **{s: {k: short[s][k] for k in SCHEDULE_KEYS}
                                               for s in ("teacher", "student", "matcher")}})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{body['name']}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return str(path)


@dataclass
class Variant:
    name: str
    profile: str
    ablation: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, folder: Path) -> "Variant":
        name, _, spec = text.partition("=")
        spec, _, ablation = spec.partition("/")
        base, *changes = spec.split("+")
        options = dict(change.split("=", 1) for change in changes)
        return cls(name, derived_profile(base, options, folder), tuple(filter(None, ablation.split(","))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=True, help="NAME=PROFILE[+OPTION=VALUE...][/ABLATION]")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--base", default="demo", help="the profile of the teacher and the matcher")
    parser.add_argument("--runs", default="runs-variants")
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from ackd_bench.data.build import build_dataset
    from ackd_bench.harness.evaluate import ensure
    from ackd_bench.leaderboard.paired import Run, compare
    from ackd_bench.results import read_result
    from ackd_bench.train.api import RunOptions, train_student
    from ackd_bench.train.request import RunRequest

    variants = [Variant.parse(v, Path(args.runs) / "profiles") for v in args.variant]
    dataset = args.data / "toy"
    build_dataset("toy", dataset, progress=False)
    options = RunOptions(runs_root=Path(args.runs), device=args.device, progress=False, reuse_finished=True)
    teacher = ensure(RunRequest.teacher_run(dataset, "S", profile=args.base), options)
    matcher = ensure(RunRequest.matcher_run(dataset, "S", profile=args.base), options)
    runs: dict[str, list[Run]] = {v.name: [] for v in variants}
    seconds: dict[str, list[float]] = {v.name: [] for v in variants}
    for seed in range(args.seeds):
        for v in variants:
            started = time.time()
            request = RunRequest.student_run(dataset, "S", "sembridge", profile=v.profile, seed=seed, teacher=str(teacher),
                                             matcher=str(matcher), ablation=v.ablation)
            result = train_student(request, options)
            if not result.get("reused"):
                seconds[v.name].append(time.time() - started)
            runs[v.name].append(Run.in_folder(read_result(result["run_dir"]), Path(result["run_dir"])))
            print(f"seed {seed} {v.name:12s} OA {100 * result['oa']:.1f}", flush=True)
    n = runs[variants[0].name][0].record.n_test
    print(f"\n{dataset} ({n} RGB test images), S/S SemBridge students, {args.seeds} seeds; teacher and matcher "
          f"of the {args.base} profile\n")
    print("| variant | profile | ablation | OA mean ± std | s per run |")
    print("|---|---|---|---|---|")
    for v in variants:
        oa = [100 * r.record.oa for r in runs[v.name]]
        per_run = f"{np.mean(seconds[v.name]):.0f}" if seconds[v.name] else "–"
        print(f"| {v.name} | {Path(v.profile).stem} | {','.join(v.ablation) or '–'} | {np.mean(oa):.1f} ± "
              f"{np.std(oa, ddof=1):.1f} | {per_run} |")
    print("\n| A - B | OA difference [95% interval] | detectable | resolved |")
    print("|---|---|---|---|")
    first = variants[0].name
    for v in variants[1:]:
        oa = compare(runs[v.name], runs[first], v.name, first, {}).estimates["oa"]
        print(f"| {v.name} - {first} | {100 * oa.difference:+.1f} [{100 * oa.low:+.1f}, {100 * oa.high:+.1f}] | "
              f"{100 * oa.mdd:.1f} | {'yes' if oa.resolved else 'no'} |")


if __name__ == "__main__":
    main()
