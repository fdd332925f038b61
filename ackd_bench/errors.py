"""User-facing errors, and the one place that turns any failure into what the terminal shows.

Bad input (a file, a field, an option) ends in `ackd-bench: error: WHERE: what` on one line of
bounded length and exit status 2. Anything else is a bug in the tool: one line saying so, exit
status 1, and the traceback saved to a file (in the run folder when there is one, else under the
user's `$ACKD_BENCH_HOME/errors/`), never on the terminal. `ACKD_BENCH_DEBUG=1` re-raises instead.
"""

from __future__ import annotations

import datetime
import os
import traceback
from pathlib import Path


class AckdError(Exception):
    """A problem with the user's input or files, reported without a traceback."""


class DatasetError(AckdError):
    """A dataset directory, manifest or shard is missing, inconsistent or corrupt."""


class RecipeError(AckdError):
    """A recipe name or recipe file is unknown or malformed."""


ERROR_CHARACTERS = 2000  # an error quoting a file's value stays one readable line, whatever the file held
INPUT_FAILURE, BUG = 2, 1


def bounded(message: str, limit: int = ERROR_CHARACTERS) -> str:
    """`message` on one line of at most `limit` characters: a 50 MB field quoted by an error must not
    come back as a 50 MB line (a submission's list of bad rows stays a list, one row a line)."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... ({len(message):,} characters in all)"


def failure_line(exc: BaseException, run_folder: Path | None = None) -> tuple[str, int]:
    """What the terminal shows for `exc`, and the exit status."""
    if isinstance(exc, AckdError):
        return f"ackd-bench: error: {bounded(str(exc))}", INPUT_FAILURE
    if isinstance(exc, MemoryError):  # sizes are checked before allocating; this is the machine's own limit
        return ("ackd-bench: error: out of memory (the machine's limit; a smaller --batch-size, --resident off or "
                "fewer --workers need less)"), INPUT_FAILURE
    if isinstance(exc, OSError):  # a path that is a folder, a read-only or full disk, a file where a folder should be
        where = f"{exc.filename}: " if exc.filename else ""
        return f"ackd-bench: error: {bounded(where + (exc.strerror or str(exc)))}", INPUT_FAILURE
    saved = save_traceback(exc, run_folder)
    kept = f"the traceback is in {saved}" if saved else "the traceback could not be saved"
    summary = bounded(" ".join(f"{type(exc).__name__}: {exc}".split()), 300)
    return (f"ackd-bench: internal error (a bug in ackd-bench, not in your input: please report it): {summary}; "
            f"{kept}"), BUG


def save_traceback(exc: BaseException, run_folder: Path | None) -> Path | None:
    """The traceback of `exc` in `run_folder` (or the user's errors folder); None where neither is writable."""
    from .home import user_home

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for folder in ([run_folder] if run_folder else []) + [user_home() / "errors"]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"ackd-bench-error-{stamp}-{os.getpid()}.txt"
            path.write_text(text, errors="backslashreplace")
            return path
        except OSError:
            continue
    return None
