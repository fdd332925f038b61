"""The result record every run writes: schema and validation live here, once (the allowed
methods, pairs and ablations are `experiment.py`'s).

Metrics are stored as fractions in [0, 1]. On read, a metric in (1, 100] is taken as a percentage
and converted. `oa` is None for multi-label teachers (the paper prints '/').
"""

from __future__ import annotations

import csv
import io
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from .data.splits import PROTOCOLS
from .experiment import ABLATIONS, ARCHS, parse_method
from .errors import AckdError
from .provenance import atomic_path, write_json_atomic
from .untrusted import PLAIN_NAME, load_json


@dataclass(frozen=True)
class Record:
    """One run's result: `result.json`, a row of `result.csv` and of every leaderboard CSV. The
    fields are the columns, in the CSV's order."""

    dataset: str
    dataset_version: str
    method: str  # teacher | none | LOSS | sembridge | sembridge+LOSS (experiment.parse_method)
    kd_loss: str | None  # the distillation loss (built in or outside), None for teacher / none
    sembridge: bool
    ablation: str  # switched-off SemBridge components, comma-separated, "" for none
    teacher: str | None  # R | M | S
    student: str | None  # R | M | S, None for teacher runs
    seed: int
    profile: str  # the training profile (paper, smoke, ...): with epochs, part of the run key
    epochs: int
    protocol: str  # heldout | reference (data/splits.py PROTOCOLS): what oa/f1 and val_oa/val_f1 were measured on
    oa: float | None
    f1: float
    val_oa: float | None
    val_f1: float
    n_test: int
    config_hash: str
    code_version: str
    wall_seconds: float
    device: str
    # provenance a submission carries: the teacher checkpoint and where the method is published
    teacher_sha256: str | None
    paper_url: str | None
    code_url: str | None
    precision: str | None  # bf16 | fp16 | fp32: what the run trained in
    # sha256 of the run's per-item test predictions (predictions.py); None for runs older than them
    predictions_sha256: str | None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], known_versions: dict[str, set[str]] | None = None) -> Record:
        """A raw row (from JSON or CSV, untrusted) -> a typed record; ValueError names the first bad field.
        With `known_versions` (dataset -> version hashes), the dataset version must be one of them.
        The checks run in a fixed order (each column's type, then its text, names, ranges and URLs,
        then how the columns fit together): the first failure is the message a submitter sees."""
        missing = [k for k in RESULT_FIELDS if k not in raw and k not in ABSENT_DEFAULTS]
        if missing:
            raise ValueError(f"missing column(s) {', '.join(missing)}")
        typed = cls(**{name: _coerce(name, _given(raw, name)) for name in RESULT_FIELDS})
        for name in ("device", "code_version", "profile", "paper_url", "code_url"):  # text that reaches CSVs and pages
            check_plain_text(name, getattr(typed, name))
        # names that become HTML ids, Markdown and LaTeX: plain ASCII names (no look-alikes, no markup)
        if not isinstance(typed.dataset, str) or not PLAIN_NAME.fullmatch(typed.dataset):
            raise ValueError(f"dataset: {str(typed.dataset)[:40]!r} is not a plain name (ASCII letters, digits, . _ + -)")
        if typed.profile is not None and not PROFILE_NAME.fullmatch(typed.profile):
            raise ValueError(f"profile: {typed.profile[:40]!r} is not a profile name (ASCII letters, digits, . _ + - @)")
        for name, top in BOUNDS.items():
            value = getattr(typed, name)
            if value is not None and value > top:
                raise ValueError(f"{name}: {raw[name]} is above {top:g}, more than any real run")
        for name in ("paper_url", "code_url"):
            url = getattr(typed, name)
            if url is not None and not re.fullmatch(r"https://[^\s\"'<>]+", url):
                raise ValueError(f"{name}: {url[:40]!r} is not an https:// URL")
        if typed.protocol not in PROTOCOLS:
            raise ValueError(f"protocol: {typed.protocol[:20]!r} is not one of {', '.join(PROTOCOLS)}")
        if typed.precision not in (None, "bf16", "fp16", "fp32"):
            raise ValueError(f"precision: {typed.precision[:20]!r} is not one of bf16, fp16, fp32")
        for name in ("teacher_sha256", "predictions_sha256"):
            if getattr(typed, name) is not None and not re.fullmatch(r"[0-9a-f]{64}", getattr(typed, name)):
                raise ValueError(f"{name}: expected 64 hex digits")
        try:
            parsed = parse_method(typed.method)
        except AckdError as exc:
            raise ValueError(f"method: {exc}") from None
        given = {name: getattr(typed, name) for name in METRICS if getattr(typed, name) is not None}
        percent = any(1.0 < v <= 100.0 for v in given.values())  # a record is in fractions or in percent, never both
        for name, value in given.items():
            if not 0.0 <= value <= 100.0:
                raise ValueError(f"{name}: {raw[name]} is outside [0, 1] (or [0, 100] as a percentage)")
            if percent and value <= 1.0 and value != 0.0:
                others = ", ".join(f"{k}={raw[k]}" for k, v in given.items() if v > 1.0)
                raise ValueError(f"{name}: {raw[name]} is a fraction but {others} is a percentage: give every metric "
                                 "of a record in the same unit")
        # one name per method (`sembridge+kd` is `sembridge`) and metrics in fractions
        record = replace(typed, method=parsed.name, **{k: v / 100.0 if percent else v for k, v in given.items()})
        sembridge, expected_loss, method = parsed.sembridge, parsed.loss, parsed.name
        if record.kd_loss != expected_loss:
            raise ValueError(f"kd_loss: {record.kd_loss!r} does not fit method '{method}' (expected {expected_loss!r})")
        if record.sembridge != sembridge:
            raise ValueError(f"sembridge: {record.sembridge} does not fit method '{method}'")
        parts = [p for p in record.ablation.split(",") if p]
        if any(p not in ABLATIONS for p in parts) or parts != [a for a in ABLATIONS if a in parts]:
            raise ValueError(f"ablation: {record.ablation!r} is not a comma-separated subset of {','.join(ABLATIONS)}")
        if parts and not sembridge:
            raise ValueError("ablation: only SemBridge runs have ablations")
        for role in ("teacher", "student"):
            arch = getattr(record, role)
            if arch is not None and arch not in ARCHS:
                raise ValueError(f"{role}: {arch!r} is not one of {', '.join(ARCHS)}")
        if method == "teacher" and (record.teacher is None or record.student is not None):
            raise ValueError("teacher runs name a teacher and no student")
        if method != "teacher" and record.student is None:
            raise ValueError("student: missing")
        if method not in ("teacher", "none") and record.teacher is None:
            raise ValueError("teacher: missing for a distilled student")
        if record.oa is None and method != "teacher":
            raise ValueError("oa: missing (only multi-label teachers have no OA)")
        if record.seed < 0 or record.epochs < 1 or record.n_test < 1 or record.wall_seconds < 0:
            raise ValueError("seed, epochs, n_test and wall_seconds must be non-negative (epochs, n_test >= 1)")
        if not re.fullmatch(r"[0-9a-f]{64}", record.config_hash):
            raise ValueError("config_hash: expected 64 hex digits")
        if known_versions is not None:
            versions = known_versions.get(record.dataset)
            if versions is None:
                raise ValueError(f"dataset: unknown '{record.dataset}'")
            if record.dataset_version not in versions:
                raise ValueError(f"dataset_version: {record.dataset_version[:16]}... is not a known version of "
                                 f"{record.dataset}")
        # last, so that a column's own check speaks first: every cell, of every column, that starts like
        # a formula (a column checked only against a list, a number written "+1") is refused too
        for name in RESULT_FIELDS:
            value = raw.get(name)
            if isinstance(value, str) and value[:1] in FORMULA_START:
                raise ValueError(f"{name}: {value[:40]!r} starts with {value[:1]!r}, as a spreadsheet formula does "
                                 "(CSV injection); no valid value does")
        return record

    def to_dict(self) -> dict[str, Any]:
        """The columns in order, as `result.json` holds them."""
        return asdict(self)


RESULT_FIELDS = tuple(f.name for f in fields(Record))  # the CSV header
PROVENANCE_FIELDS = ("teacher_sha256", "paper_url", "code_url", "precision", "predictions_sha256")
# what a field absent from a record older than it reads as: None for provenance; `heldout` for the
# protocol, the only one runs had before it was recorded
ABSENT_DEFAULTS: dict[str, Any] = {**dict.fromkeys(PROVENANCE_FIELDS), "protocol": "heldout"}
METRICS = ("oa", "f1", "val_oa", "val_f1")
RUN_KEY = ("dataset_version", "method", "ablation", "teacher", "student", "seed", "profile", "epochs", "protocol")


def _column_types() -> dict[str, tuple[type, bool]]:
    """name -> (type, nullable), read from Record's annotations (`float | None`: float, nullable)."""
    kinds = {}
    for name, hint in typing.get_type_hints(Record).items():
        if isinstance(hint, types.UnionType):
            kind, = (arg for arg in typing.get_args(hint) if arg is not type(None))
            kinds[name] = (kind, True)
        else:
            kinds[name] = (hint, False)
    return kinds


COLUMN_TYPES = _column_types()


def make_record(**values: Any) -> Record:
    """A run's own record, every column named: a column added to Record and forgotten by a run
    fails here, not as a blank in the CSV."""
    missing = [k for k in RESULT_FIELDS if k not in values]
    extra = [k for k in values if k not in RESULT_FIELDS]
    if missing or extra:
        raise ValueError(f"result record: missing {missing}, unexpected {extra}")
    return Record(**values)


@dataclass(frozen=True)
class MatcherResult:
    """What a matcher run reports (`result.json`): no classification, so no leaderboard record; its
    retrieval top-1 and CLIP loss on MS val, with the provenance every result carries."""

    dataset: str
    dataset_version: str
    arch: str
    seed: int
    profile: str
    epochs: int
    protocol: str
    val_top1: float
    val_clip_loss: float
    config_hash: str
    code_version: str
    device: str
    precision: str
    kind: str = "matcher"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_result(run_dir: str | Path, record: Record | MatcherResult) -> Path:
    """`result.json`, and for a classification record the same as a one-row `result.csv`, all atomic."""
    run_dir = Path(run_dir)
    write_json_atomic(run_dir / "result.json", record.to_dict())
    if isinstance(record, Record):
        with atomic_path(run_dir / "result.csv") as tmp:
            tmp.write_text(records_to_csv([record]))
    return run_dir / "result.json"


def records_to_csv(records: list[Record], header: bool = True) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(RESULT_FIELDS), lineterminator="\n")
    if header:
        writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in record.to_dict().items()})
    return buffer.getvalue()


def read_result_json(run_dir: str | Path) -> dict[str, Any] | None:
    """A finished run's `result.json` as written, or None: a Record's columns, or a matcher's own
    keys (a matcher has no classification result, so no Record)."""
    path = Path(run_dir) / "result.json"
    return load_json(path.read_text(encoding="utf-8", errors="surrogateescape"), str(path)) if path.is_file() else None


def read_result(run_dir: str | Path) -> Record | None:
    """A finished teacher or student run's record, or None. The file is this tool's own output, so
    it is taken as written (no validation); columns newer than it are None."""
    data = read_result_json(run_dir)
    if data is None:
        return None
    return Record(**{name: data.get(name, ABSENT_DEFAULTS[name]) if name in ABSENT_DEFAULTS else data[name]
                     for name in RESULT_FIELDS})


def _given(raw: Mapping[str, Any], name: str) -> Any:
    """A field's raw value; one absent or blank (a CSV of older records merged with newer) reads as
    its ABSENT_DEFAULTS value where it has one."""
    value = raw.get(name)
    if name in ABSENT_DEFAULTS and (value is None or (isinstance(value, str) and not value.strip())):
        return ABSENT_DEFAULTS[name]
    return value


def _coerce(name: str, value: Any) -> Any:
    kind, nullable = COLUMN_TYPES[name]
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if nullable or kind is str:
            return None if nullable else ""
        raise ValueError(f"{name}: missing")
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ValueError(f"{name}: expected true/false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        try:
            return int(str(value).strip()) if not isinstance(value, (int, float)) else int(value)
        except ValueError:
            raise ValueError(f"{name}: expected an integer, got {value!r}") from None
    if kind is float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
        return number
    return str(value)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP's CSV-injection prefixes
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@-]{0,127}")
BOUNDS = {"seed": 2**32 - 1, "epochs": 100_000, "n_test": 10**9, "wall_seconds": 10**8}  # sane ranges, on submit


def check_plain_text(name: str, value: str | None) -> None:
    if value is None:
        return
    if len(value) > 200 or value[:1] in FORMULA_START or re.search(r"[\x00-\x1f<>]", value):
        raise ValueError(f"{name}: {value[:40]!r} is not plain text (at most 200 characters, no control characters "
                         "or < >, not starting with = + - @ as a spreadsheet formula would)")


def run_key(record: Record) -> tuple:
    """What makes two records the same run: one of them is a duplicate on a board."""
    return tuple(getattr(record, k) for k in RUN_KEY)
