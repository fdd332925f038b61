"""The result record every run writes (DESIGN section 7): the schema lives here, once.

Metrics are fractions in [0, 1]. `oa` is None for multi-label teachers (the paper prints '/').
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .provenance import write_json_atomic

# name -> (type, nullable)
RESULT_FIELDS: dict[str, tuple[type, bool]] = {
    "dataset": (str, False),
    "dataset_version": (str, False),
    "method": (str, False),        # teacher | none | kd | rkd | ... | sembridge+kd | ...
    "kd_loss": (str, True),        # the baseline loss, None for teacher / none
    "sembridge": (bool, False),
    "ablation": (str, False),      # comma-separated switched-off components, "" for none
    "teacher": (str, True),        # R | M | S
    "student": (str, True),        # R | M | S, None for teacher runs
    "seed": (int, False),
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
}


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
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(RESULT_FIELDS))
    writer.writeheader()
    writer.writerow({k: "" if v is None else v for k, v in record.items()})
    from .provenance import atomic_path

    with atomic_path(run_dir / "result.csv") as tmp:
        tmp.write_text(buffer.getvalue())
    return run_dir / "result.json"


def read_result(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None
