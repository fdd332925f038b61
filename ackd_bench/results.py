"""The result record every run writes: schema and validation live here, once (the allowed
methods, pairs and ablations are `experiment.py`'s).

Metrics are stored as fractions in [0, 1]. On read, a metric in (1, 100] is taken as a percentage
and converted. `oa` is None for multi-label teachers (the paper prints '/').
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from .experiment import ABLATIONS, ARCHS, parse_method
from .errors import AckdError
from .provenance import atomic_path, write_json_atomic
from .untrusted import PLAIN_NAME

# name -> (type, nullable)
RESULT_FIELDS: dict[str, tuple[type, bool]] = {
    "dataset": (str, False),
    "dataset_version": (str, False),
    "method": (str, False),        # teacher | none | LOSS | sembridge | sembridge+LOSS (experiment.parse_method)
    "kd_loss": (str, True),        # the distillation loss (built in or outside), None for teacher / none
    "sembridge": (bool, False),
    "ablation": (str, False),      # switched-off SemBridge components, comma-separated, "" for none
    "teacher": (str, True),        # R | M | S
    "student": (str, True),        # R | M | S, None for teacher runs
    "seed": (int, False),
    "profile": (str, False),       # the training profile (paper, smoke, ...): with epochs, part of the run key
    "epochs": (int, False),
    "oa": (float, True),
    "f1": (float, False),
    "val_oa": (float, True),
    "val_f1": (float, False),
    "n_test": (int, False),
    "config_hash": (str, False),
    "code_version": (str, False),
    "wall_seconds": (float, False),
    "device": (str, False),
    # provenance a submission carries: the teacher checkpoint and where the method is published
    "teacher_sha256": (str, True),
    "paper_url": (str, True),
    "code_url": (str, True),
    "precision": (str, True),  # bf16 | fp16 | fp32: what the run trained in
}
PROVENANCE_FIELDS = ("teacher_sha256", "paper_url", "code_url", "precision")  # absent from records older than them: None
METRICS = ("oa", "f1", "val_oa", "val_f1")
RUN_KEY = ("dataset_version", "method", "ablation", "teacher", "student", "seed", "profile", "epochs")


def make_record(**values: Any) -> dict[str, Any]:
    missing = [k for k in RESULT_FIELDS if k not in values]
    extra = [k for k in values if k not in RESULT_FIELDS]
    if missing or extra:
        raise ValueError(f"result record: missing {missing}, unexpected {extra}")
    return {k: values[k] for k in RESULT_FIELDS}


def write_result(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """`result.json` plus the same record as a one-row `result.csv`, both atomic."""
    run_dir = Path(run_dir)
    write_json_atomic(run_dir / "result.json", record)
    with atomic_path(run_dir / "result.csv") as tmp:
        tmp.write_text(records_to_csv([record]))
    return run_dir / "result.json"


def records_to_csv(records: list[dict[str, Any]], header: bool = True) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(RESULT_FIELDS), lineterminator="\n")
    if header:
        writer.writeheader()
    for record in records:
        writer.writerow({k: "" if record.get(k) is None else record[k] for k in RESULT_FIELDS})
    return buffer.getvalue()


def read_result(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _coerce(name: str, value: Any) -> Any:
    kind, nullable = RESULT_FIELDS[name]
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


PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@-]{0,127}")
BOUNDS = {"seed": 2**32 - 1, "epochs": 100_000, "n_test": 10**9, "wall_seconds": 10**8}  # sane ranges, on submit


def check_plain_text(name: str, value: str | None) -> None:
    if value is None:
        return
    if len(value) > 200 or value[:1] in ("=", "+", "-", "@") or re.search(r"[\x00-\x1f<>]", value):
        raise ValueError(f"{name}: {value[:40]!r} is not plain text (at most 200 characters, no control characters "
                         "or < >, not starting with = + - @ as a spreadsheet formula would)")


def validate_record(raw: dict[str, Any], known_versions: dict[str, set[str]] | None = None) -> dict[str, Any]:
    """A raw row (from JSON or CSV) -> a typed record; ValueError names the first bad field."""
    missing = [k for k in RESULT_FIELDS if k not in raw and k not in PROVENANCE_FIELDS]
    if missing:
        raise ValueError(f"missing column(s) {', '.join(missing)}")
    record = {name: _coerce(name, raw.get(name)) for name in RESULT_FIELDS}
    for name in ("device", "code_version", "profile", "paper_url", "code_url"):  # text that reaches CSVs and pages
        check_plain_text(name, record[name])
    # names that become HTML ids, Markdown and LaTeX: plain ASCII names (no look-alikes, no markup)
    if not isinstance(record["dataset"], str) or not PLAIN_NAME.fullmatch(record["dataset"]):
        raise ValueError(f"dataset: {str(record['dataset'])[:40]!r} is not a plain name (ASCII letters, digits, . _ + -)")
    if record["profile"] is not None and not PROFILE_NAME.fullmatch(record["profile"]):
        raise ValueError(f"profile: {record['profile'][:40]!r} is not a profile name (ASCII letters, digits, . _ + - @)")
    for name, top in BOUNDS.items():
        if record[name] is not None and record[name] > top:
            raise ValueError(f"{name}: {raw[name]} is above {top:g}, more than any real run")
    for name in ("paper_url", "code_url"):
        if record[name] is not None and not re.fullmatch(r"https://[^\s\"'<>]+", record[name]):
            raise ValueError(f"{name}: {record[name][:40]!r} is not an https:// URL")
    if record["precision"] not in (None, "bf16", "fp16", "fp32"):
        raise ValueError(f"precision: {record['precision'][:20]!r} is not one of bf16, fp16, fp32")
    if record["teacher_sha256"] is not None and not re.fullmatch(r"[0-9a-f]{64}", record["teacher_sha256"]):
        raise ValueError("teacher_sha256: expected 64 hex digits")
    try:
        method = parse_method(record["method"])
    except AckdError as exc:
        raise ValueError(f"method: {exc}") from None
    record["method"] = method.name
    given = {name: record[name] for name in METRICS if record[name] is not None}
    percent = any(1.0 < v <= 100.0 for v in given.values())  # a record is in fractions or in percent, never both
    for name, value in given.items():
        if not 0.0 <= value <= 100.0:
            raise ValueError(f"{name}: {raw[name]} is outside [0, 1] (or [0, 100] as a percentage)")
        if percent and value <= 1.0 and value != 0.0:
            others = ", ".join(f"{k}={raw[k]}" for k, v in given.items() if v > 1.0)
            raise ValueError(f"{name}: {raw[name]} is a fraction but {others} is a percentage: give every metric "
                             "of a record in the same unit")
        record[name] = value / 100.0 if percent else value
    sembridge, expected_loss, method = method.sembridge, method.loss, method.name
    if record["kd_loss"] != expected_loss:
        raise ValueError(f"kd_loss: '{record['kd_loss']}' does not fit method '{method}' (expected {expected_loss!r})")
    if record["sembridge"] != sembridge:
        raise ValueError(f"sembridge: {record['sembridge']} does not fit method '{method}'")
    parts = [p for p in record["ablation"].split(",") if p]
    if any(p not in ABLATIONS for p in parts) or parts != [a for a in ABLATIONS if a in parts]:
        raise ValueError(f"ablation: '{record['ablation']}' is not a comma-separated subset of {','.join(ABLATIONS)}")
    if parts and not sembridge:
        raise ValueError("ablation: only SemBridge runs have ablations")
    for role in ("teacher", "student"):
        if record[role] is not None and record[role] not in ARCHS:
            raise ValueError(f"{role}: '{record[role]}' is not one of {', '.join(ARCHS)}")
    if method == "teacher" and (record["teacher"] is None or record["student"] is not None):
        raise ValueError("teacher runs name a teacher and no student")
    if method != "teacher" and record["student"] is None:
        raise ValueError("student: missing")
    if method not in ("teacher", "none") and record["teacher"] is None:
        raise ValueError("teacher: missing for a distilled student")
    if record["oa"] is None and method != "teacher":
        raise ValueError("oa: missing (only multi-label teachers have no OA)")
    if record["seed"] < 0 or record["epochs"] < 1 or record["n_test"] < 1 or record["wall_seconds"] < 0:
        raise ValueError("seed, epochs, n_test and wall_seconds must be non-negative (epochs, n_test >= 1)")
    if not re.fullmatch(r"[0-9a-f]{64}", record["config_hash"]):
        raise ValueError("config_hash: expected 64 hex digits")
    if known_versions is not None:
        versions = known_versions.get(record["dataset"])
        if versions is None:
            raise ValueError(f"dataset: unknown '{record['dataset']}'")
        if record["dataset_version"] not in versions:
            raise ValueError(f"dataset_version: {record['dataset_version'][:16]}... is not a known version of "
                             f"{record['dataset']}")
    return record


def run_key(record: dict[str, Any]) -> tuple:
    return tuple(record[k] for k in RUN_KEY)
