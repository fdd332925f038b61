"""Reading, validating and appending to `leaderboard/leaderboard.csv`.

A submission is all-or-nothing: every row is validated (schema, types, ranges, known dataset
version, no duplicate run key) before anything is written; then, under a file lock, the board is
re-read, checked for duplicates again, and replaced atomically by the old rows plus the new.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..errors import AckdError
from ..provenance import atomic_path
from ..results import RESULT_FIELDS, records_to_csv, run_key, validate_record

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BOARD = REPO / "leaderboard" / "leaderboard.csv"
VERSIONS = REPO / "leaderboard" / "dataset_versions.csv"


class SubmissionError(AckdError):
    """A submission was rejected; the message lists every bad row."""


def known_versions(path: Path = VERSIONS) -> dict[str, set[str]]:
    """Dataset versions the board accepts (dataset -> version hashes), from dataset_versions.csv."""
    versions: dict[str, set[str]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            versions.setdefault(row["dataset"], set()).add(row["dataset_version"])
    return versions


@dataclass
class Candidate:
    source: str  # "file:row" for messages
    raw: dict[str, Any]


def read_candidates(paths: list[str | Path]) -> list[Candidate]:
    """Rows from result.json files, CSV files of records, or run directories holding result.json."""
    candidates = []
    for path in map(Path, paths):
        if path.is_dir():
            path = path / "result.json"
        if not path.is_file():
            raise SubmissionError(f"{path}: not found")
        if path.suffix == ".json":
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise SubmissionError(f"{path}: not valid JSON ({exc})") from None
            for i, raw in enumerate(data if isinstance(data, list) else [data]):
                if isinstance(raw, dict) and raw.get("kind") == "matcher":
                    continue  # a matcher run has no classification result: not a leaderboard record
                candidates.append(Candidate(f"{path}:{i + 1}", raw if isinstance(raw, dict) else {}))
            continue
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or set(RESULT_FIELDS) - set(reader.fieldnames):
                missing = sorted(set(RESULT_FIELDS) - set(reader.fieldnames or []))
                raise SubmissionError(f"{path}: not a results CSV (missing columns: {', '.join(missing)})")
            for i, raw in enumerate(reader):
                if None in raw or None in raw.values():
                    raise SubmissionError(f"{path}:{i + 2}: malformed CSV row (wrong number of fields)")
                candidates.append(Candidate(f"{path}:{i + 2}", raw))
    return candidates


def read_board(board: Path) -> list[dict[str, Any]]:
    if not board.exists():
        return []
    with open(board, newline="") as handle:
        return [validate_record(raw) for raw in csv.DictReader(handle)]


def validate_all(candidates: list[Candidate], existing: list[dict[str, Any]],
                 versions: dict[str, set[str]]) -> list[dict[str, Any]]:
    errors, records = [], []
    seen = {run_key(r): "the board" for r in existing}
    for candidate in candidates:
        try:
            record = validate_record(candidate.raw, versions)
        except ValueError as exc:
            errors.append(f"{candidate.source}: {exc}")
            continue
        key = run_key(record)
        if key in seen:
            errors.append(f"{candidate.source}: duplicate run (dataset version, method, ablation, pair, seed) "
                          f"already in {seen[key]}")
            continue
        seen[key] = candidate.source
        records.append(record)
    if errors:
        raise SubmissionError(f"rejected, nothing written ({len(errors)} bad row(s)):\n  " + "\n  ".join(errors))
    return records


def submit(paths: list[str | Path], board: str | Path = DEFAULT_BOARD, versions_file: Path = VERSIONS) -> int:
    """Validate and append; returns the number of rows added."""
    board = Path(board)
    versions = known_versions(versions_file)
    candidates = read_candidates(paths)
    if not candidates:
        raise SubmissionError("no rows to submit")
    validate_all(candidates, [], versions)  # fail fast, before taking the lock
    board.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(board) + ".lock", timeout=60):
        existing_text = board.read_text() if board.exists() else ""
        records = validate_all(candidates, read_board(board), versions)
        with atomic_path(board) as tmp:
            body = existing_text if existing_text else records_to_csv([], header=True)
            tmp.write_text(body + records_to_csv(records, header=False))
    return len(records)
