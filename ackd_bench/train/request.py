"""What to run, as one object: the CLI, `eval`, the grid and the sweep build a `RunRequest` once and
pass it whole; every run records it (`request.json`), so `ackd-bench rerun RUN_DIR` replays it.

A request names what a run is (its dataset, architecture, method, checkpoints it learns from,
profile, seed and overrides); `RunOptions` (train/api.py) says how to run it, and never enters a
run's config hash.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import AckdError
from ..experiment import parse_ablation
from ..untrusted import NUMBER, load_json, typed

KINDS = ("teacher", "student", "matcher")
REQUEST_FILE = "request.json"
OVERRIDES = ("epochs", "batch_size", "lr")  # the profile values the CLI changes without --set

Profile = str | dict  # a profile's name or path, or one loaded (with --set) by train.profiles.load_profile


SEMBRIDGE_BOUNDS = {"gamma": (1e-3, 1e3), "heads": (1, 64), "lambda1": (0, 1e3)}
SEED_RANGE = 2**32  # seeds are whole numbers from 0 to 2**32 - 1 (NumPy's legacy generator takes no more)


@dataclass(frozen=True)
class SemBridgeSettings:
    """The CLI's SemBridge knobs (None: sembridge.yaml's default); any one set renames the profile."""

    gamma: float | None = None  # DynM temperature
    heads: int | None = None  # Planner heads H
    lambda1: float | None = None  # KD weight
    dynm: tuple[int, int, int] | None = None  # Eq. 12's schedule E0, DELTA, GROWTH

    def __post_init__(self):
        """Each knob within a range any experiment uses: a replayed request may come from anyone, and a
        DynM step of 0 or less plans re-matches without end."""
        from .profiles import MAX_EPOCHS

        for key, (low, high) in SEMBRIDGE_BOUNDS.items():
            value = getattr(self, key)
            if value is not None and (not typed(value, (int,) if key == "heads" else NUMBER)
                                      or not low <= value <= high):
                raise AckdError(f"sembridge.{key} is {repr(value)[:40]}: expected "
                                f"{'a whole number' if key == 'heads' else 'a number'} from {low} to {high}")
        if self.dynm is not None:
            lows = (0, 1, 0)  # E0 from 0, DELTA from 1 (each re-match after the last), GROWTH from 0
            if len(self.dynm) != 3 or not all(typed(x, (int,)) and low <= x <= MAX_EPOCHS
                                              for x, low in zip(self.dynm, lows)):
                raise AckdError(f"sembridge.dynm is {repr(self.dynm)[:60]}: expected E0,DELTA,GROWTH with E0 and "
                                f"GROWTH from 0 and DELTA from 1, each at most {MAX_EPOCHS} (Eq. 12)")

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in (("gamma", self.gamma), ("heads", self.heads), ("lambda1", self.lambda1))
                if v is not None}


@dataclass(frozen=True)
class RunRequest:
    """One run: a teacher (MS), a student (RGB, alone or distilled) or SemBridge's matcher."""

    kind: str
    dataset: str  # a built dataset's folder
    arch: str | None = None  # the trained network (matcher: its encoders; None: sembridge.yaml's)
    method: str = "none"  # students: none, a loss, sembridge[+LOSS]
    teacher: str | None = None  # students: the teacher checkpoint (a path or hf://ORG/NAME/FILE)
    matcher: str | None = None  # SemBridge students: the matcher checkpoint
    profile: Profile = "paper"
    seed: int | None = None  # None: the profile's
    overrides: dict[str, Any] = field(default_factory=dict)  # epochs, batch_size, lr of this run's section
    method_params: dict[str, Any] = field(default_factory=dict)  # the loss's own parameters
    ablation: tuple[str, ...] = ()  # SemBridge components switched off
    sembridge: SemBridgeSettings = field(default_factory=SemBridgeSettings)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise AckdError(f"run kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        object.__setattr__(self, "dataset", str(self.dataset))
        # split here, checked by the run: "--ablate X" on a method without SemBridge says that first
        given = self.ablation.split(",") if isinstance(self.ablation, str) else self.ablation
        object.__setattr__(self, "ablation", tuple(a.strip() for a in given if a.strip()))
        object.__setattr__(self, "overrides", {k: v for k, v in self.overrides.items() if v is not None})
        for name in ("teacher", "matcher"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, str(getattr(self, name)))

    @classmethod
    def teacher_run(cls, dataset: str | Path, arch: str, **given: Any) -> RunRequest:
        return cls("teacher", str(dataset), arch, method="teacher", **given)

    @classmethod
    def student_run(cls, dataset: str | Path, arch: str, method: str = "none", **given: Any) -> RunRequest:
        return cls("student", str(dataset), arch, method=method, **given)

    @classmethod
    def matcher_run(cls, dataset: str | Path, arch: str | None = None, **given: Any) -> RunRequest:
        return cls("matcher", str(dataset), arch, method="matcher", **given)

    def with_profile(self, profile: dict[str, Any]) -> RunRequest:
        """The request with its profile resolved: what a run records, so a replay does not depend on
        the profile file staying as it was."""
        return replace(self, profile=profile)

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["ablation"] = list(self.ablation)
        body["sembridge"]["dynm"] = None if self.sembridge.dynm is None else list(self.sembridge.dynm)
        return body

    @classmethod
    def from_json(cls, data: Any, where: str) -> RunRequest:
        """A recorded request (a run folder may come from anyone: every field is checked)."""
        try:
            return cls._parse(data)
        except (AckdError, TypeError, ValueError) as exc:
            raise AckdError(f"{where}: {exc}") from None

    @classmethod
    def _parse(cls, data: Any) -> RunRequest:
        if not isinstance(data, dict):
            raise AckdError("expected a JSON object")
        kinds = {"kind": (str,), "dataset": (str,), "arch": (str, type(None)), "method": (str,),
                 "teacher": (str, type(None)), "matcher": (str, type(None)), "profile": (dict,),
                 "seed": (int, type(None)), "overrides": (dict,), "method_params": (dict,), "ablation": (list,),
                 "sembridge": (dict,)}
        unknown = sorted(set(data) - set(kinds))
        if unknown:
            raise AckdError(f"unknown field(s) {', '.join(unknown)}")
        for key, types in kinds.items():
            if key not in data or not typed(data[key], types):
                raise AckdError(f"field '{key}' is missing or not a {' or '.join(t.__name__ for t in types)}")
        if set(data["overrides"]) - set(OVERRIDES) or not all(typed(v, NUMBER) for v in data["overrides"].values()):
            raise AckdError(f"field 'overrides' may only hold numbers for {', '.join(OVERRIDES)}")
        from .profiles import MAX_BATCH, MAX_EPOCHS, check_loaded

        bounds = {"epochs": MAX_EPOCHS, "batch_size": MAX_BATCH}
        if any(not 0 < v <= bounds.get(k, float("inf")) for k, v in data["overrides"].items()):
            raise AckdError(f"field 'overrides' {data['overrides']}: expected epochs 1 to {MAX_EPOCHS}, batch_size 1 to "
                            f"{MAX_BATCH}, lr above 0")
        if data["seed"] is not None and not 0 <= data["seed"] < SEED_RANGE:
            raise AckdError(f"field 'seed' is {str(data['seed'])[:40]}: expected a whole number from 0 to 2**32 - 1")
        _check_method(data["method"])
        check_loaded(data["profile"], "field 'profile'")
        if data["method_params"]:
            from ..experiment import parse_method
            from .profiles import check_method_params

            loss = parse_method(data["method"]).loss
            if loss is None:
                raise AckdError(f"field 'method_params': method {data['method'][:40]!r} has no loss to set them on")
            check_method_params(loss, data["method_params"], "field 'method_params'")
        settings = data["sembridge"]
        if set(settings) - {"gamma", "heads", "lambda1", "dynm"}:
            raise AckdError("field 'sembridge' may only hold gamma, heads, lambda1 and dynm")
        dynm = settings.get("dynm")
        if dynm is not None and not (isinstance(dynm, list) and len(dynm) == 3 and all(typed(x, (int,)) for x in dynm)):
            raise AckdError("field 'sembridge.dynm' must be three integers")
        parse_ablation(data["ablation"])
        body = {**data, "ablation": tuple(data["ablation"]),
                "sembridge": SemBridgeSettings(**{**settings, "dynm": None if dynm is None else tuple(dynm)})}
        return cls(**body)


def _check_method(method: str) -> None:
    """A recorded method is a built-in name or an installed package's registered one: a request never
    makes the tool import a module it names (`module:Class`) unless an installed package publishes
    exactly that class under the `ackd_bench.methods` entry points. Checked before anything imports."""
    from ..experiment import parse_method
    from ..methods.registry import ENTRY_POINT_GROUP, outside_methods

    if ":" in method:
        if method not in outside_methods().values():
            raise AckdError(f"field 'method' names a module to import ({method[:80]!r}); a recorded request may name "
                            f"only built-in methods or those installed packages register ({ENTRY_POINT_GROUP})")
        return
    parse_method(method)


def write_request(run_dir: Path, request: RunRequest) -> None:
    from ..provenance import write_json_atomic

    write_json_atomic(run_dir / REQUEST_FILE, request.to_json())


def read_request(run_dir: str | Path) -> RunRequest:
    path = Path(run_dir) / REQUEST_FILE
    if not path.is_file():
        raise AckdError(f"{path}: not found; {run_dir} is not a run folder of this version of ackd-bench "
                        "(runs record their request since 0.2)")
    try:
        data = load_json(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError as exc:
        raise AckdError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return RunRequest.from_json(data, str(path))
