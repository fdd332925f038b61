"""Names read from files, and paths the tool writes: the two rules that keep shared files in their place.

A name that comes from a file a user may have been sent (a manifest's dataset or shard file, a
recipe, a sweep, a board) is a plain name: one path component of ASCII letters, digits and
`. _ + -`, starting with a letter or digit, so it can never be `..`, absolute, hidden or a
look-alike. Paths come from the user; what the tool writes under a folder is checked on the
resolved path, so a symlink inside a shared folder cannot lead outside it.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import AckdError

PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def plain_name(value: object, what: str) -> str:
    """`value` if it is a plain name, else a one-line error naming `what` (the file and field)."""
    if not isinstance(value, str) or not PLAIN_NAME.fullmatch(value):
        raise AckdError(f"{what} {value!r}: expected a plain name (ASCII letters, digits, '.', '_', '+', '-'; "
                        "no path, at most 128 characters)")
    return value


def inside(path: Path, root: Path, what: str) -> Path:
    """`path` resolved, after checking that it stays under `root` (resolved too)."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise AckdError(f"{what} {path}: resolves to {resolved}, outside {base}")
    return resolved
