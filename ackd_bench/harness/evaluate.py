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
from ..experiment import parse_method, parse_pairs
from ..methods.registry import load_outside
from ..train.api import RunOptions, run, train_student
from ..train.request import RunRequest
from .plan import RunPlan


def ensure(request: RunRequest, options: RunOptions) -> Path:
    """The best checkpoint of a teacher or matcher run (in its default directory under runs_root),
    trained now unless it finished before."""
    return Path(run(request, options.reusing())["run_dir"]) / "checkpoints" / "best.pt"


def run_student(request: RunRequest, plan: RunPlan, teacher_arch: str | None = None) -> dict[str, Any]:
    """One student run with what its method needs: the teacher (of `teacher_arch`) and the matcher
    are trained, or found again by their config hash, first unless the request names them."""
    options = plan.options
    parsed = parse_method(request.method)
    shared = {"profile": request.profile, "seed": request.seed}
    if parsed.needs_matcher(list(request.ablation)) and request.matcher is None:
        matcher = RunRequest.matcher_run(request.dataset, plan.matcher_arch, overrides=plan.matcher_overrides,
                                         **shared)
        request = replace(request, matcher=str(ensure(matcher, options)))
    if parsed.needs_teacher and request.teacher is None:
        if teacher_arch is None:
            raise AckdError(f"--method {parsed.name} distils from a teacher: pass --teacher or a pair")
        teacher = RunRequest.teacher_run(request.dataset, teacher_arch, overrides=plan.teacher_overrides, **shared)
        request = replace(request, teacher=str(ensure(teacher, options)))
    result = train_student(request, options)
    teacher_run = Path(request.teacher).parent.parent if request.teacher is not None else None
    return {**result, "teacher_run_dir": str(teacher_run) if teacher_run else None}


def run_eval(request: RunRequest, *, pair: str = "R/R", plan: RunPlan | None = None) -> list[dict[str, Any]]:
    """The `request`'s student for each pair (its arch and teacher arch taken from the pair), finished
    ones reused and interrupted ones resumed; `plan` says how prerequisites are trained and run."""
    plan = plan or RunPlan()
    pairs = parse_pairs(pair)
    if request.teacher is not None and len({p.split("/")[0] for p in pairs}) > 1:
        raise AckdError("--teacher fixes one teacher checkpoint: choose pairs with a single teacher architecture")
    if ":" in request.method:
        request = replace(request, method=load_outside(request.method))
    # one pair may take --out; several each take their default directory
    student_plan = replace(plan, options=plan.options.reusing(plan.options.run_dir if len(pairs) == 1 else None,
                                                              keep_resume=True))
    results = []
    for p in pairs:
        teacher_arch, student_arch = p.split("/")
        result = run_student(replace(request, arch=student_arch), student_plan, teacher_arch)
        results.append({**result, "pair": p})
    return results
