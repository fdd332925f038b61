"""The user's own folder for what the tool keeps between runs and outside any dataset or checkout."""

from __future__ import annotations

import os
from pathlib import Path


def user_home() -> Path:
    """$ACKD_BENCH_HOME, else $XDG_DATA_HOME/ackd-bench, else ~/.local/share/ackd-bench: a folder only
    this user writes, so what is kept there (a board, verification stamps, bug reports) cannot come
    from a file somebody sent."""
    home = os.environ.get("ACKD_BENCH_HOME")
    if home:
        return Path(home)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "ackd-bench"
