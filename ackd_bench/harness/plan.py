"""A sweep's plan, written beside its ledger (`<runs_root>/sweeps/<name>.sweep.json`): every run of
its grid, what they share (the profile as loaded, overrides, matcher, runs per GPU, run options) and
its launcher. `ackd-bench sweep --replay PLAN` runs exactly that again, skipping what is done, as one
config replays an experiment in torchdistill.

A plan may come from somebody else, so it is read as untrusted input: strict JSON, every field typed
and bounded, the profile checked as a recorded one, and the runs written where the plan lies (its
folder's parent is the runs root), never where a field points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import AckdError
from ..experiment import ARCHS, parse_ablation, parse_method
from ..provenance import code_version, write_json_atomic
from ..train.api import RunOptions
from ..untrusted import NUMBER, load_json, plain_name, typed
from .grid import GridRun

PLAN_FORMAT = "ackd-bench-sweep/1"
LAUNCHERS = ("local", "submitit-local", "slurm")
KINDS = ("teacher", "matcher", "student")
# RunOptions fields a plan records, with the types each may hold (values are checked by the run itself)
OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "device": (str,), "workers": (int, type(None)), "resident": (str,), "checkpoint_every": NUMBER,
    "compile": (bool,), "threads": (int, type(None)), "precision": (str,), "loggers": (list,),
    "teacher_mode": (str,), "log_transport_cost": (bool,), "sync_batchnorm": (bool,),
}
PLAN_FIELDS = ("format", "code_version", "name", "launcher", "slurm", "config", "runs")
MAX_RUNS = 100_000  # the paper's grid is a few hundred runs


@dataclass(frozen=True)
class RunPlan:
    """What the runs of a sweep or an eval share: the profile and each section's overrides (what to
    run), how a student's matcher is trained where the request names none, how many runs share a
    device, and one RunOptions (how; its threads per run, None for the usable cores divided by the
    runs at once)."""

    profile: str | dict = "paper"
    student_overrides: dict[str, Any] = field(default_factory=dict)
    teacher_overrides: dict[str, Any] = field(default_factory=dict)
    matcher_overrides: dict[str, Any] = field(default_factory=dict)
    matcher_arch: str | None = None  # None: sembridge.yaml's (resnet34, as the reference)
    runs_per_gpu: int = 1  # K: runs in flight at once on one device, one process each
    options: RunOptions = field(default_factory=RunOptions)

    @property
    def runs_root(self) -> Path:
        return Path(self.options.runs_root)

    def with_threads(self, threads: int | None) -> RunPlan:
        return replace(self, options=replace(self.options, threads=threads))


def plan_path(runs_root: Path, name: str) -> Path:
    return Path(runs_root) / "sweeps" / f"{name}.sweep.json"


def write_plan(requests: list[GridRun], config: RunPlan, launcher: str, name: str,
               slurm: dict[str, Any] | None) -> Path:
    """The plan of a sweep about to run, with its profile resolved (a replay must not depend on the
    profile file staying as it was)."""
    from ..train.profiles import load_profile

    profile = config.profile if isinstance(config.profile, dict) else load_profile(config.profile)
    options = {f.name: getattr(config.options, f.name) for f in fields(RunOptions) if f.name in OPTION_TYPES}
    body = {
        "format": PLAN_FORMAT, "code_version": code_version(), "name": name, "launcher": launcher,
        "slurm": dict(slurm or {}),
        "config": {"profile": profile, "student_overrides": config.student_overrides,
                   "teacher_overrides": config.teacher_overrides, "matcher_overrides": config.matcher_overrides,
                   "matcher_arch": config.matcher_arch, "runs_per_gpu": config.runs_per_gpu,
                   "options": {**options, "loggers": list(options["loggers"])}},
        "runs": [asdict(r) for r in requests],
    }
    path = plan_path(config.runs_root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, body)
    return path


def read_plan(path: str | Path) -> tuple[list[GridRun], RunPlan, str, str, dict[str, Any]]:
    """(runs, config, launcher, name, slurm settings) of a written plan, every field checked."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AckdError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    data = load_json(text, str(path))
    try:
        return _parsed(data, path)
    except (AckdError, TypeError, ValueError) as exc:
        message = str(exc)
        raise AckdError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def _parsed(data: Any, path: Path) -> tuple[list[GridRun], RunPlan, str, str, dict[str, Any]]:
    from ..train.profiles import check_loaded
    from ..train.request import OVERRIDES

    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise AckdError(f"not a sweep plan (expected \"format\": \"{PLAN_FORMAT}\")")
    unknown = sorted(set(data) - set(PLAN_FIELDS))
    if unknown:
        raise AckdError(f"unknown field(s) {', '.join(unknown)[:80]}: a plan holds {', '.join(PLAN_FIELDS)}")
    name = plain_name(data.get("name"), "field 'name'")
    if path.name != f"{name}.sweep.json" or path.parent.name != "sweeps":
        raise AckdError(f"a plan of sweep '{name}' lies at <runs root>/sweeps/{name}.sweep.json, beside its ledger")
    launcher = data.get("launcher")
    if launcher not in LAUNCHERS:
        raise AckdError(f"field 'launcher' is {str(launcher)[:40]!r}: expected one of {', '.join(LAUNCHERS)}")
    slurm = data.get("slurm")
    if not isinstance(slurm, dict) or not all(isinstance(k, str) and (v is None or typed(v, (int, str)))
                                              for k, v in slurm.items()):
        raise AckdError("field 'slurm' must map settings to numbers or text")
    config = data.get("config")
    if not isinstance(config, dict):
        raise AckdError("field 'config' must be a mapping")
    for key in ("student_overrides", "teacher_overrides", "matcher_overrides"):
        overrides = config.get(key)
        if not isinstance(overrides, dict) or set(overrides) - set(OVERRIDES) or not all(
                v is None or (typed(v, NUMBER) and 0 < v <= 10**6) for v in overrides.values()):
            raise AckdError(f"field 'config.{key}' may only hold positive numbers for {', '.join(OVERRIDES)}")
    runs_per_gpu = config.get("runs_per_gpu")
    if not typed(runs_per_gpu, (int,)) or not 1 <= runs_per_gpu <= 64:
        raise AckdError(f"field 'config.runs_per_gpu' is {str(runs_per_gpu)[:20]}: expected 1 to 64")
    matcher_arch = config.get("matcher_arch")
    if matcher_arch is not None and matcher_arch not in ARCHS:
        raise AckdError(f"field 'config.matcher_arch' is {str(matcher_arch)[:20]!r}: expected one of {', '.join(ARCHS)}")
    options = config.get("options")
    if not isinstance(options, dict) or set(options) != set(OPTION_TYPES) or not all(
            typed(options[k], kinds) for k, kinds in OPTION_TYPES.items()):
        raise AckdError(f"field 'config.options' must give {', '.join(OPTION_TYPES)}, each of its type")
    if not all(isinstance(name, str) for name in options["loggers"]):
        raise AckdError("field 'config.options.loggers' must list logger names")
    profile = check_loaded(config.get("profile"), "field 'config.profile'")
    runs = data.get("runs")
    if not isinstance(runs, list) or not 0 < len(runs) <= MAX_RUNS:
        raise AckdError(f"field 'runs' must list 1 to {MAX_RUNS:,} runs")
    runs_root = path.parent.parent  # where the plan lies, never where a field points
    sweep_config = RunPlan(
        profile=profile, student_overrides=config["student_overrides"], teacher_overrides=config["teacher_overrides"],
        matcher_overrides=config["matcher_overrides"], matcher_arch=matcher_arch, runs_per_gpu=runs_per_gpu,
        options=RunOptions(runs_root=runs_root, **{**options, "loggers": tuple(options["loggers"])}))
    return [_grid_run(run, i) for i, run in enumerate(runs)], sweep_config, launcher, name, slurm


def _grid_run(run: Any, index: int) -> GridRun:
    where = f"runs[{index}]"
    names = [f.name for f in fields(GridRun)]
    if not isinstance(run, dict) or set(run) != set(names):
        raise AckdError(f"{where}: expected the fields {', '.join(names)}")
    if not typed(run["stage"], (int,)) or run["stage"] not in (0, 1) or run["kind"] not in KINDS:
        raise AckdError(f"{where}: stage must be 0 or 1 and kind one of {', '.join(KINDS)}")
    if not typed(run["seed"], (int,)) or not 0 <= run["seed"] < 2**32:
        raise AckdError(f"{where}: seed must be a whole number from 0 to 2**32 - 1")
    if not all(isinstance(run[k], str) for k in ("dataset", "method", "teacher", "student", "ablation")):
        raise AckdError(f"{where}: dataset, method, teacher, student and ablation must be text")
    if run["teacher"] not in ("", *ARCHS) or run["student"] not in ("", *ARCHS):
        raise AckdError(f"{where}: teacher and student must be one of {', '.join(ARCHS)} or empty")
    if run["kind"] == "student":
        parse_method(run["method"])
    parse_ablation(run["ablation"])
    return GridRun(**run)
