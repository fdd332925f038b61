"""Reading, validating and appending to `leaderboard/leaderboard.csv`.

A submission is all-or-nothing: every row is validated (schema, types, ranges, known dataset
version, no duplicate run key) before anything is written; then, under a file lock, the board is
re-read, checked for duplicates again, and replaced atomically by the old rows plus the new.
"""

from __future__ import annotations

import contextlib
import csv
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..errors import AckdError
from ..predictions import FILE_NAME, read_predictions
from ..provenance import atomic_path
from ..resources import resource_file
from ..untrusted import load_json, read_csv
from ..home import user_home
from ..results import ABSENT_DEFAULTS, RESULT_FIELDS, Record, records_to_csv, run_key

REPO = Path(__file__).resolve().parents[2]
PUBLISHED_BOARD = REPO / "leaderboard" / "leaderboard.csv"  # the project's published board: only with --board


def default_board() -> Path:
    """A user's own board, outside any checkout ($ACKD_BENCH_HOME, else $XDG_DATA_HOME/ackd-bench,
    else ~/.local/share/ackd-bench): submitting never dirties the code version of later runs."""
    return user_home() / "leaderboard.csv"
VERSIONS = resource_file("leaderboard", "dataset_versions.csv")


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
    raw: dict[str, Any]  # untrusted until Record.from_dict has read it
    folder: Path | None = None  # the run folder of a result.json: where its predictions.npz is


def predictions_store(board: Path) -> Path:
    """Where a board keeps the per-item predictions of its rows, each named by its sha256
    (`predictions/<sha256>.npz` beside the board): what its paired comparisons read."""
    return Path(board).parent / "predictions"


def keep_predictions(candidates: list[Candidate], records: list[Record], board: Path) -> int:
    """Copies the predictions file of each added row that has one into the board's store, checked
    against the digest its record holds; returns how many were copied."""
    wanted = {r.predictions_sha256 for r in records if r.predictions_sha256}
    store = predictions_store(board)
    copied = 0
    for candidate in candidates:
        digest = candidate.raw.get("predictions_sha256")
        if digest not in wanted or candidate.folder is None or not (candidate.folder / FILE_NAME).is_file():
            continue
        target = store / f"{digest}.npz"
        if not target.exists():
            read_predictions(candidate.folder / FILE_NAME, digest)  # a file that is not the one recorded stays out
            store.mkdir(parents=True, exist_ok=True)
            with atomic_path(target, suffix=".npz") as tmp:
                shutil.copyfile(candidate.folder / FILE_NAME, tmp)
            copied += 1
        wanted.discard(digest)
    return copied


def read_candidates(paths: list[str | Path]) -> list[Candidate]:
    """Rows from result.json files, CSV files of records, or run directories holding result.json."""
    candidates = []
    for path in map(Path, paths):
        if path.is_dir():
            path = path / "result.json"
        if not path.is_file():
            raise SubmissionError(f"{path}: not found")
        try:
            candidates += _read_file(path)
        except UnicodeDecodeError as exc:
            raise SubmissionError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return candidates


def _read_file(path: Path) -> list[Candidate]:
    candidates = []
    if path.suffix == ".json":
        try:
            data = load_json(path.read_text(encoding="utf-8"), str(path))
        except AckdError as exc:
            raise SubmissionError(str(exc)) from None
        for i, raw in enumerate(data if isinstance(data, list) else [data]):
            if isinstance(raw, dict) and raw.get("kind") == "matcher":
                continue  # a matcher run has no classification result: not a leaderboard record
            candidates.append(Candidate(f"{path}:{i + 1}", raw if isinstance(raw, dict) else {},
                                        path.parent if path.name == "result.json" else None))
        return candidates
    try:
        header, rows = read_csv(path)
    except AckdError as exc:
        raise SubmissionError(str(exc)) from None
    required = set(RESULT_FIELDS) - set(ABSENT_DEFAULTS)  # a record older than those columns is still one
    if not header or required - set(header):
        raise SubmissionError(f"{path}: not a results CSV (missing columns: {', '.join(sorted(required - set(header)))})")
    for line, raw in rows:
        if None in raw or None in raw.values():
            raise SubmissionError(f"{path}:{line}: malformed CSV row (wrong number of fields)")
        candidates.append(Candidate(f"{path}:{line}", raw))
    return candidates


def read_board(board: Path) -> list[Record]:
    if not board.exists():
        return []
    records = []
    for line, raw in read_csv(board)[1]:
        try:
            records.append(Record.from_dict(raw))
        except ValueError as exc:  # a board edited by hand: say where
            raise SubmissionError(f"{board}:{line}: {exc}") from None
    return records


def readme_path(board: Path) -> Path:
    """`README.md` beside a board named leaderboard.csv, else `<board>.md`: boards that share a
    folder each keep their own."""
    board = Path(board)
    return board.parent / "README.md" if board.name == "leaderboard.csv" else board.with_suffix(".md")


def regenerate_readme(board: Path) -> Path | None:
    """The board's README of tables, next to it, unless a README there is not one this tool wrote
    (a user's own file is never overwritten); returns the path written, or None."""
    from .summary import readme

    path = readme_path(board)
    if not _ours(path):
        return None
    with atomic_path(path) as tmp:
        tmp.write_text(readme(read_board(board), predictions_store(board)) + "\n")
    return path


def _ours(readme_file: Path) -> bool:
    """Whether a README beside a board may be (re)written: absent, or one this tool wrote."""
    from .render import README_MARK

    if not readme_file.exists():
        return True
    head = readme_file.read_text(errors="replace")[:200]
    return head.startswith(README_MARK) or head.startswith("# leaderboard\n\nRegenerated by `ackd-bench")


def _installed(loss: str | None) -> None:
    """A row of an outside method is submitted where the method is installed: a typo (`sembridge+zzz`)
    must not become a row of a method that does not exist."""
    from ..experiment import BUILTIN_LOSSES

    if loss is not None and loss not in BUILTIN_LOSSES:
        from ..methods.registry import distiller_class  # imports torch: only for an outside method's rows

        try:
            distiller_class(loss)
        except AckdError as exc:
            raise ValueError(f"method: {exc}; install its package before submitting its rows") from None


def validate_all(candidates: list[Candidate], existing: list[Record],
                 versions: dict[str, set[str]], new_only: bool = False) -> list[Record]:
    """The candidates as records; a row the board already holds is an error, or with `new_only` left out."""
    errors, records = [], []
    on_board = {run_key(r) for r in existing}
    seen = dict.fromkeys(on_board, "the board")
    for candidate in candidates:
        try:
            record = Record.from_dict(candidate.raw, versions)
            _installed(record.kd_loss)
        except (ValueError, AckdError) as exc:
            errors.append(f"{candidate.source}: {exc}")
            continue
        key = run_key(record)
        if new_only and key in on_board:
            continue
        if key in seen:
            errors.append(f"{candidate.source}: duplicate run (dataset version, method, ablation, pair, seed, "
                          f"profile, epochs, protocol) already in {seen[key]}")
            continue
        seen[key] = candidate.source
        records.append(record)
    if errors:
        raise SubmissionError(f"rejected, nothing written ({len(errors)} bad row(s)):\n  " + "\n  ".join(errors))
    return records


def submit(paths: list[str | Path], board: str | Path | None = None, versions_file: Path = VERSIONS,
           readme: bool = False) -> int:
    """Validate and append; returns the number of rows added. With `readme`, the board's README
    of tables is regenerated under the same lock, so it always shows the board as written."""
    return _submit(read_candidates(paths), board, versions_file, readme)


def submit_runs(runs_root: str | Path, board: str | Path | None = None, versions_file: Path = VERSIONS,
                readme: bool = False) -> tuple[int, int]:
    """Every finished teacher and student run under `runs_root` that the board does not hold yet
    (`leaderboard submit` with no files); returns (rows added, rows the board already held)."""
    root = Path(runs_root)
    candidates = read_candidates(sorted(root.rglob("result.json")) if root.is_dir() else [])
    if not candidates:
        raise SubmissionError(f"{root}: no finished teacher or student runs (result.json) to submit; give files, "
                              "or --runs-root where your runs are")
    added = _submit(candidates, board, versions_file, readme, new_only=True)
    return added, len(candidates) - added


def _submit(candidates: list[Candidate], board: str | Path | None, versions_file: Path, readme: bool,
            new_only: bool = False) -> int:
    # a board that is a link is written where it points: the shared board gets the rows
    board = (Path(board) if board is not None else default_board()).resolve()
    versions = known_versions(versions_file)
    if not candidates:
        raise SubmissionError("no rows to submit")
    validate_all(candidates, [], versions)  # fail fast, before taking the lock
    board.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(board) + ".lock", timeout=60):
        existing = read_board(board)  # checked first: UTF-8 text, CSV, every cell
        existing_text = board.read_text(encoding="utf-8") if board.exists() else ""
        records = validate_all(candidates, existing, versions, new_only)
        if not records:  # every row is on the board already: leave it as it is
            return 0
        if existing_text.split("\n", 1)[0] == ",".join(RESULT_FIELDS):  # kept byte for byte
            text = existing_text + records_to_csv(records, header=False)
        else:  # new or written before the current columns: rewritten whole, in them
            text = records_to_csv(existing + records, header=True)
        # the rows' predictions first, named by their digest: a board row never names a file half-copied
        keep_predictions(candidates, records, board)
        # both files are written in full before either replaces its original: a read-only or full
        # disk leaves board and README as they were, never a board whose README misses its rows
        with contextlib.ExitStack() as replace_at_exit:
            board_tmp = replace_at_exit.enter_context(atomic_path(board))
            board_tmp.write_text(text, encoding="utf-8")
            if readme and _ours(readme_path(board)):
                from .summary import readme as render_readme

                readme_tmp = replace_at_exit.enter_context(atomic_path(readme_path(board)))
                readme_tmp.write_text(render_readme(existing + records, predictions_store(board)) + "\n")
    return len(records)
