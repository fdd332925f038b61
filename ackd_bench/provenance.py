"""What every output records about how it was made: code version, hashes, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from . import __version__


@lru_cache(maxsize=1)
def code_version() -> str:
    """The package's version, plus the git commit (and a '-dirty' mark) when the package sits in its
    own checkout. An installed package inside some other repository (a venv in a user's project)
    gets its version only: that repository's commit says nothing about this code."""
    repo = Path(__file__).resolve().parents[1]
    if not _own_checkout(repo):
        return __version__
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}" if commit else __version__


def _own_checkout(repo: Path) -> bool:
    """Whether `repo` (the package's parent folder) is this project's checkout: its git root, with the
    project's own pyproject.toml."""
    try:
        project = (repo / "pyproject.toml").read_text(errors="replace")
    except OSError:
        return False
    return (repo / ".git").exists() and 'name = "ackd-bench"' in project


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(obj: Any) -> str:
    """sha256 of a JSON-able object, independent of key order and formatting."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def fsync_and_rename(tmp_path: str | os.PathLike, final_path: str | os.PathLike) -> None:
    """Make a fully written temp file durable, then move it into place in one step."""
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp_path, final_path)
    dir_fd = os.open(os.path.dirname(os.path.abspath(final_path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells it (changing it races threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(final_path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside final_path; on success it replaces final_path, on error it is removed.
    The file gets the mode a plain open() would give it (mkstemp's is 0600 whatever the umask)."""
    final_path = Path(final_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=suffix, dir=final_path.parent)
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    try:
        yield Path(tmp)
        fsync_and_rename(tmp, final_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
