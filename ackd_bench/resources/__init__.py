"""The data that ships with the code, found in one place: dataset recipes (`recipes/`), training
profiles (`recipes/profiles/`), method defaults with the paper's published results (`baselines/`) and
the leaderboard's accepted dataset versions (here, `leaderboard/`), as package resources
(importlib.resources). The two top-level folders are installed as `ackd_bench.recipes` and
`ackd_bench.baselines` (pyproject.toml's package-dir), in a wheel and in an editable install alike.

A user can put a folder in front of a kind with an environment variable: `ACKD_BENCH_RECIPES`,
`ACKD_BENCH_PROFILES`, `ACKD_BENCH_METHODS`.
"""

from __future__ import annotations

import os
from importlib.resources import as_file, files
from pathlib import Path

# kind -> (package, folder inside it)
PACKAGED = {"recipes": ("ackd_bench.recipes", ""), "profiles": ("ackd_bench.recipes", "profiles"),
            "methods": ("ackd_bench.baselines", ""), "leaderboard": (__name__, "leaderboard")}
KINDS = tuple(PACKAGED)


def resource_dirs(kind: str) -> list[Path]:
    """Folders holding `kind` resources, the user's (from the environment) first."""
    if kind not in KINDS:
        raise ValueError(f"resource kind {kind!r}: expected one of {', '.join(KINDS)}")
    dirs = []
    if env := os.environ.get(f"ACKD_BENCH_{kind.upper()}"):
        dirs.append(Path(env))
    package, folder = PACKAGED[kind]
    with as_file(files(package).joinpath(folder) if folder else files(package)) as packaged:  # a real folder for a regular (or editable) install
        dirs.append(Path(packaged))
    return [d for d in dirs if d.is_dir()]


def resource_file(kind: str, name: str) -> Path:
    """The first `name` among `kind`'s folders; FileNotFoundError names where it looked."""
    for directory in resource_dirs(kind):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{kind}/{name} (looked in {', '.join(map(str, resource_dirs(kind)))})")
