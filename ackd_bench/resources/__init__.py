"""The data that ships with the code, found in one place: dataset recipes, training profiles,
method defaults (with the paper's published results) and the leaderboard's accepted dataset
versions, as package resources (importlib.resources).

A user can put a folder in front of a kind with an environment variable: `ACKD_BENCH_RECIPES`,
`ACKD_BENCH_PROFILES`, `ACKD_BENCH_METHODS`.
"""

from __future__ import annotations

import os
from importlib.resources import as_file, files
from pathlib import Path

KINDS = ("recipes", "profiles", "methods", "leaderboard")


def resource_dirs(kind: str) -> list[Path]:
    """Folders holding `kind` resources, the user's (from the environment) first."""
    if kind not in KINDS:
        raise ValueError(f"resource kind {kind!r}: expected one of {', '.join(KINDS)}")
    dirs = []
    if env := os.environ.get(f"ACKD_BENCH_{kind.upper()}"):
        dirs.append(Path(env))
    with as_file(files(__name__) / kind) as packaged:  # a real folder for a regular (or editable) install
        dirs.append(Path(packaged))
    return [d for d in dirs if d.is_dir()]


def resource_file(kind: str, name: str) -> Path:
    """The first `name` among `kind`'s folders; FileNotFoundError names where it looked."""
    for directory in resource_dirs(kind):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{kind}/{name} (looked in {', '.join(map(str, resource_dirs(kind)))})")
