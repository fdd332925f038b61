"""Zip a staged fixture tree into a source archive, paths relative to the staging root."""

from __future__ import annotations

import zipfile
from pathlib import Path


def zip_tree(staging: Path, archive: Path, pattern: str) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(staging.rglob(pattern)):
            zf.write(path, path.relative_to(staging).as_posix())
    return archive
