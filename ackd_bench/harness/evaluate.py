"""`ackd-bench eval`: the teacher, the matcher and the students a method needs, for one or all pairs.

Teachers and matchers are trained once and found again by their config hash (their default run
directory); a finished student run is not repeated, and an interrupted one continues from its
last checkpoint.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import AckdError
from ..train.api import RunOptions, parse_ablation, parse_method, train_classifier, train_matcher, train_student

PAIRS = ("R/R", "M/M", "S/S", "R/M", "R/S", "M/S")


def parse_pairs(pair: str) -> list[str]:
    if pair == "all":
        return list(PAIRS)
    pairs = [p.strip().upper() for p in pair.split(",")]
    bad = [p for p in pairs if p not in PAIRS]
    if bad:
        raise AckdError(f"--pair {','.join(bad)}: expected 'all' or some of {', '.join(PAIRS)}")
    return pairs


def _shared(options: RunOptions) -> RunOptions:
    """Teachers and matchers live in their default directory under runs_root and are reused."""
    return replace(options, run_dir=None, force=False, reuse_finished=True, resume="auto")


def ensure_teacher(dataset_dir, arch: str, profile: str, seed: int | None, overrides: dict, options: RunOptions) -> Path:
    result = train_classifier(dataset_dir, arch, role="teacher", profile=profile, seed=seed, overrides=overrides,
                              options=_shared(options))
    return Path(result["run_dir"]) / "checkpoints" / "best.pt"


def ensure_matcher(dataset_dir, profile: str, seed: int | None, overrides: dict, options: RunOptions,
                   arch: str | None = None) -> Path:
    result = train_matcher(dataset_dir, arch, profile=profile, seed=seed, overrides=overrides, options=_shared(options))
    return Path(result["run_dir"]) / "checkpoints" / "best.pt"


def run_eval(dataset_dir: str | Path, method: str, *, pair: str = "R/R", teacher: str | Path | None = None,
             matcher: str | Path | None = None, profile: str = "paper", seed: int | None = None,
             student_overrides: dict | None = None, teacher_overrides: dict | None = None,
             matcher_overrides: dict | None = None, matcher_arch: str | None = None, ablate: str | None = None,
             sembridge_params: dict | None = None, dynm_schedule=None,
             options: RunOptions | None = None) -> list[dict[str, Any]]:
    options = options or RunOptions()
    pairs = parse_pairs(pair)
    if teacher is not None and len({p.split("/")[0] for p in pairs}) > 1:
        raise AckdError("--teacher fixes one teacher checkpoint: choose pairs with a single teacher architecture")
    _, sembridge = parse_method(method)
    needs_matcher = sembridge and "ssm" not in parse_ablation(ablate)
    if needs_matcher and matcher is None:
        matcher = ensure_matcher(dataset_dir, profile, seed, matcher_overrides or {}, options, matcher_arch)
    results = []
    for p in pairs:
        teacher_arch, student_arch = p.split("/")
        teacher_ckpt = teacher
        if teacher_ckpt is None and method != "none":
            teacher_ckpt = ensure_teacher(dataset_dir, teacher_arch, profile, seed, teacher_overrides or {}, options)
        student_options = replace(options, reuse_finished=True, resume=True if options.resume is True else "auto",
                                  run_dir=options.run_dir if len(pairs) == 1 else None)
        result = train_student(dataset_dir, student_arch, method=method, teacher=teacher_ckpt, matcher=matcher,
                               profile=profile, seed=seed, overrides=student_overrides, ablate=ablate,
                               sembridge_params=sembridge_params, dynm_schedule=dynm_schedule, options=student_options)
        teacher_run = Path(teacher_ckpt).parent.parent if teacher_ckpt is not None else None
        results.append({**result, "pair": p, "teacher_run_dir": str(teacher_run) if teacher_run else None})
    return results
