"""`ackd-bench eval`: the teacher, the matcher and the students a method needs, for one or all pairs.

Teachers and matchers are trained once and found again by their config hash (their default run
directory); a finished student run is not repeated, and an interrupted one continues from its
last checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import AckdError
from ..experiment import parse_method, parse_pairs
from ..methods.registry import load_outside
from ..train.api import RunOptions, run, train_student
from ..train.request import RunRequest


@dataclass(frozen=True)
class Prerequisites:
    """How a student's teacher and matcher are trained when the request names no checkpoint."""

    teacher_arch: str | None = None  # the pair's teacher
    teacher_overrides: dict[str, Any] = field(default_factory=dict)
    matcher_arch: str | None = None  # None: sembridge.yaml's (resnet34, as the reference)
    matcher_overrides: dict[str, Any] = field(default_factory=dict)


def _shared(options: RunOptions) -> RunOptions:
    """Teachers and matchers live in their default directory under runs_root and are reused."""
    return replace(options, run_dir=None, force=False, reuse_finished=True, resume="auto")


def ensure(request: RunRequest, options: RunOptions) -> Path:
    """The best checkpoint of a teacher or matcher run, trained now unless it finished before."""
    return Path(run(request, _shared(options))["run_dir"]) / "checkpoints" / "best.pt"


def run_student(request: RunRequest, prerequisites: Prerequisites = Prerequisites(),
                options: RunOptions | None = None) -> dict[str, Any]:
    """One student run with what its method needs: the teacher and the matcher are trained (or
    found again by their config hash) first unless the request names them."""
    options = options or RunOptions()
    parsed = parse_method(request.method)
    shared = {"profile": request.profile, "seed": request.seed}
    if parsed.needs_matcher(list(request.ablation)) and request.matcher is None:
        matcher = RunRequest.matcher_run(request.dataset, prerequisites.matcher_arch,
                                         overrides=prerequisites.matcher_overrides, **shared)
        request = replace(request, matcher=str(ensure(matcher, options)))
    if parsed.needs_teacher and request.teacher is None:
        if prerequisites.teacher_arch is None:
            raise AckdError(f"--method {parsed.name} distils from a teacher: pass --teacher or a pair")
        teacher = RunRequest.teacher_run(request.dataset, prerequisites.teacher_arch,
                                         overrides=prerequisites.teacher_overrides, **shared)
        request = replace(request, teacher=str(ensure(teacher, options)))
    result = train_student(request, options)
    teacher_run = Path(request.teacher).parent.parent if request.teacher is not None else None
    return {**result, "teacher_run_dir": str(teacher_run) if teacher_run else None}


def run_eval(request: RunRequest, *, pair: str = "R/R", prerequisites: Prerequisites = Prerequisites(),
             options: RunOptions | None = None) -> list[dict[str, Any]]:
    """The `request`'s student for each pair (its arch and teacher arch taken from the pair)."""
    options = options or RunOptions()
    pairs = parse_pairs(pair)
    if request.teacher is not None and len({p.split("/")[0] for p in pairs}) > 1:
        raise AckdError("--teacher fixes one teacher checkpoint: choose pairs with a single teacher architecture")
    if ":" in request.method:
        request = replace(request, method=load_outside(request.method))
    results = []
    for p in pairs:
        teacher_arch, student_arch = p.split("/")
        student_options = replace(options, reuse_finished=True, resume=True if options.resume is True else "auto",
                                  run_dir=options.run_dir if len(pairs) == 1 else None)
        result = run_student(replace(request, arch=student_arch), replace(prerequisites, teacher_arch=teacher_arch),
                             student_options)
        results.append({**result, "pair": p})
    return results
