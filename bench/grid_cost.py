"""What a sweep cost, per stage and kind of run, from its ledger (each run's wall and CPU seconds in
its own process) and, where given, the sweep's printed progress (each stage's elapsed time).

    python bench/grid_cost.py leaderboard/toy-grid/sweeps/toy-grid.json --log leaderboard/toy-grid/sweep.log

Prints one table: per stage and kind (teachers and matchers in stage 0, students in stage 1) and
per architecture, the runs, their summed wall and CPU seconds and the mean per run; then each
stage's elapsed time from the log. With K runs at once (`--runs-per-gpu K`), a stage's elapsed time
is about its summed wall time / K. Run time only: building the dataset is not a sweep's.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

STAGE_DONE = re.compile(r"sweep stage (\d+): 100%\|[^|]*\| (\d+)/(\d+) \[(?:(\d+):)?(\d+):(\d+)<")


def stage_elapsed(log: str) -> dict[int, float]:
    """Each stage's elapsed seconds, from the last 100% progress line tqdm printed for it."""
    found = {}
    for match in STAGE_DONE.finditer(log):
        stage, _done, _total, hours, minutes, seconds = match.groups()
        found[int(stage)] = 3600 * int(hours or 0) + 60 * int(minutes) + int(seconds)
    return found


def cost_rows(entries: dict) -> list[tuple[str, int, float, float]]:
    """(what, runs, wall seconds, CPU seconds) per stage, kind and architecture, then per stage, then in all."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for entry in entries.values():
        if entry.get("status") != "done" or "cpu_seconds" not in entry:
            continue
        arch = entry["teacher"] if entry["kind"] == "teacher" else entry["student"]  # a matcher: the plan's
        groups[f"stage {entry['stage']} {entry['kind']}s {arch}".rstrip()].append(entry)
        groups[f"stage {entry['stage']}"].append(entry)
        groups["grid"].append(entry)
    order = sorted(groups, key=lambda k: (k == "grid", k.split(" ")[:2], len(k.split(" ")) == 2, k))
    return [(k, len(groups[k]), sum(e["wall_seconds"] for e in groups[k]), sum(e["cpu_seconds"] for e in groups[k]))
            for k in order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ledger", type=Path, help="RUNS_ROOT/sweeps/NAME.json")
    parser.add_argument("--log", type=Path, help="the sweep's printed output, for each stage's elapsed time")
    args = parser.parse_args()
    entries = json.loads(args.ledger.read_text())
    failed = sum(e.get("status") != "done" for e in entries.values())
    print(f"{args.ledger}: {len(entries)} runs, {failed} not done")
    print(f"{'runs of':<26}{'runs':>6}{'wall s':>10}{'CPU s':>10}{'wall/run':>10}{'CPU/run':>9}")
    for what, runs, wall, cpu in cost_rows(entries):
        print(f"{what:<26}{runs:>6}{wall:>10.0f}{cpu:>10.0f}{wall / runs:>10.1f}{cpu / runs:>9.1f}")
    if args.log:
        for stage, seconds in sorted(stage_elapsed(args.log.read_text(errors="replace")).items()):
            print(f"stage {stage} elapsed {seconds / 60:.1f} min")
    print("GPU projection: none; bench/gpu.py has no GPU figures yet (the CUDA path has not run on a GPU)")


if __name__ == "__main__":
    main()
