"""SemBridge's mechanism on toy, per seed (figures for docs/FIDELITY.md): does the teacher's soft label
depend on an image's sub-type, does the matcher find pairs, and do SSM's and DynM's partners share the
RGB image's sub-type more often than naive same-class pairing and chance? The measurements are
bench/toy_mechanism.py's; see its docstring for their definitions.

Each seed trains (or reuses, under --runs) the S/S teacher and matcher and trains one SemBridge
student anew (its pair tables are observed while it trains).

    python bench/mechanism.py [--seeds 0 1] [--toy-version 2] [--profile demo] [--runs runs-mechanism]
    python bench/mechanism.py --dataset data/toy   # an already built toy (any version)
    python bench/mechanism.py --toy-version 3 --profile paper --schedule demo --option dynm_divergence=student-teacher

--profile names any profile; --schedule takes another profile's teacher, student and matcher
sections (the `paper` options on the demo's short schedule), --option changes an option. Every pair
table's hubs are printed after the agreement table.

toy is synthetic: the numbers say whether toy carries the paper's problem, not what SemBridge does
on the real benchmarks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the accepted recipes of earlier toy versions (the current one is the packaged recipe)
TOY_RECIPES = {1: REPO / "tests" / "data" / "toy-v1.yaml", 2: REPO / "tests" / "data" / "toy-v2.yaml"}


def built_toy(version: int, data_root: Path) -> Path:
    from ackd_bench.data.build import build_dataset
    from ackd_bench.data.recipe import Recipe
    from ackd_bench.untrusted import load_yaml

    out = data_root / f"toy-v{version}"
    recipe = None
    if version in TOY_RECIPES:
        path = TOY_RECIPES[version]
        recipe = Recipe.from_dict(load_yaml(path.read_text(), str(path)), str(path))
    build = build_dataset("toy", out, recipe=recipe, progress=False)
    built = build.manifest.built_recipe()
    if built is None or built.version != version:
        raise SystemExit(f"toy version {version}: the packaged recipe is version {built and built.version}; "
                         f"known earlier versions: {sorted(TOY_RECIPES)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--toy-version", type=int, default=2, help="build this toy version under --data")
    source.add_argument("--dataset", type=Path, help="an already built toy")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--schedule", help="a profile whose teacher, student and matcher sections to run with")
    parser.add_argument("--option", action="append", default=[], help="OPTION=VALUE: change a profile option")
    parser.add_argument("--runs", default="runs-mechanism")
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from toy_mechanism import measure_seed, render_hubs, render_mechanism  # beside this script
    from variants import derived_profile
    from ackd_bench.train.api import RunOptions

    dataset = args.dataset or built_toy(args.toy_version, args.data)
    options = RunOptions(runs_root=Path(args.runs), device=args.device, progress=False, reuse_finished=True)
    profile = derived_profile(args.profile, dict(o.split("=", 1) for o in args.option), Path(args.runs) / "profiles",
                              args.schedule)
    rows = []
    for seed in args.seeds:
        rows.append(measure_seed(dataset, seed, profile, options))
        print(render_mechanism(rows[-1:]).splitlines()[-1], flush=True)
    print(f"\n{dataset} ({Path(profile).stem} profile, S/S): agreement = share of RGB train images whose MS partner "
          "has their sub-type (%); chance = sum_k p_rgb(k|c) p_ms(k|c); naive = random same-class pairing, mean over "
          "the run's epochs; soft labels at T=3 on the MS gallery\n")
    print(render_mechanism(rows))
    print("\nHubs: each pair table's distinct MS partners per class, students per class, the most students of a class "
          "sharing one partner, and counts of RGB sub-type (rows) against partner sub-type (columns)\n")
    print(render_hubs(rows))


if __name__ == "__main__":
    main()
