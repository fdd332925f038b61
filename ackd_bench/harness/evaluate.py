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
from ..experiment import parse_ablation, parse_method, parse_pairs
from ..methods.registry import load_outside
from ..train.api import RunOptions, train_classifier, train_matcher, train_student


def _shared(options: RunOptions) -> RunOptions:
    """Teachers and matchers live in their default directory under runs_root and are reused."""
    return replace(options, run_dir=None, force=False, reuse_finished=True, resume="auto")


def ensure_teacher(dataset_dir, arch: str, profile: str | dict, seed: int | None, overrides: dict, options: RunOptions) -> Path:
    result = train_classifier(dataset_dir, arch, role="teacher", profile=profile, seed=seed, overrides=overrides,
                              options=_shared(options))
    return Path(result["run_dir"]) / "checkpoints" / "best.pt"


def ensure_matcher(dataset_dir, profile: str | dict, seed: int | None, overrides: dict, options: RunOptions,
                   arch: str | None = None) -> Path:
    result = train_matcher(dataset_dir, arch, profile=profile, seed=seed, overrides=overrides, options=_shared(options))
    return Path(result["run_dir"]) / "checkpoints" / "best.pt"


def run_student(dataset_dir, method: str, teacher_arch: str, student_arch: str, *, teacher: str | Path | None = None,
                matcher: str | Path | None = None, profile: str | dict = "paper", seed: int | None = None,
                student_overrides: dict | None = None, teacher_overrides: dict | None = None,
                matcher_overrides: dict | None = None, matcher_arch: str | None = None, ablate: str | None = None,
                sembridge_params: dict | None = None, dynm_schedule=None,
                options: RunOptions | None = None) -> dict[str, Any]:
    """One student run with what its method needs: the teacher and the matcher are trained (or
    found again by their config hash) first unless given."""
    options = options or RunOptions()
    parsed = parse_method(method)
    if parsed.needs_matcher(parse_ablation(ablate)) and matcher is None:
        matcher = ensure_matcher(dataset_dir, profile, seed, matcher_overrides or {}, options, matcher_arch)
    if parsed.needs_teacher and teacher is None:
        teacher = ensure_teacher(dataset_dir, teacher_arch, profile, seed, teacher_overrides or {}, options)
    result = train_student(dataset_dir, student_arch, method=parsed.name, teacher=teacher, matcher=matcher,
                           profile=profile, seed=seed, overrides=student_overrides, ablate=ablate,
                           sembridge_params=sembridge_params, dynm_schedule=dynm_schedule, options=options)
    teacher_run = Path(teacher).parent.parent if teacher is not None else None
    return {**result, "teacher_run_dir": str(teacher_run) if teacher_run else None}


def run_eval(dataset_dir: str | Path, method: str, *, pair: str = "R/R", teacher: str | Path | None = None,
             matcher: str | Path | None = None, profile: str | dict = "paper", seed: int | None = None,
             options: RunOptions | None = None, **student_arguments: Any) -> list[dict[str, Any]]:
    options = options or RunOptions()
    pairs = parse_pairs(pair)
    if teacher is not None and len({p.split("/")[0] for p in pairs}) > 1:
        raise AckdError("--teacher fixes one teacher checkpoint: choose pairs with a single teacher architecture")
    method = load_outside(method) if ":" in method else method
    results = []
    for p in pairs:
        teacher_arch, student_arch = p.split("/")
        student_options = replace(options, reuse_finished=True, resume=True if options.resume is True else "auto",
                                  run_dir=options.run_dir if len(pairs) == 1 else None)
        result = run_student(dataset_dir, method, teacher_arch, student_arch, teacher=teacher, matcher=matcher,
                             profile=profile, seed=seed, options=student_options, **student_arguments)
        results.append({**result, "pair": p})
    return results
