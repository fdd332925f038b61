"""Finding or downloading a source archive, verifying it, extracting it once.

Order: an extracted tree or the archive in `--source-dir`; an earlier extraction under the build
root; an earlier download; a fresh download (torchgeo's `download_url`, from the source's pinned
URL or from `$ACKD_BENCH_MIRROR/<filename>`). Archives are checked against their MD5; a file that
fails is kept aside as `<name>.corrupt` and the error names the expected and actual checksum and
the URL. Extracted trees carry no archive checksum: the readers check what they can (class
folders, band count, size, dtype) and the manifest records that the archive was not verified.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import DatasetError

MIRROR_ENV = "ACKD_BENCH_MIRROR"


@dataclass(frozen=True)
class Archive:
    name: str
    url: str | None  # None: not on any hub or mirror we can pin; taken from --source-dir only
    filename: str | None
    md5: str | None
    tree: str  # the folder, relative to the extraction root, that holds the class folders
    size: str  # for the README and error messages, e.g. "2.0 GB"
    other_trees: tuple[str, ...] = ()  # other published layouts accepted in --source-dir
    page: str = ""  # where a local-only source is published
    layout: str = ""  # what a local-only source's folder must hold, for the error message


def md5_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def archive_url(archive: Archive) -> str:
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{archive.filename}" if mirror else archive.url


def _verify(path: Path, archive: Archive, url: str) -> None:
    actual = md5_file(path)
    if actual != archive.md5:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        raise DatasetError(f"{path}: md5 mismatch for {url}: expected {archive.md5}, got {actual} "
                           f"(kept aside as {aside.name})")


def _extract(path: Path, archive: Archive, extract_root: Path) -> Path:
    from torchgeo.datasets.utils import extract_archive

    partial = extract_root.with_name(extract_root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        extract_archive(str(path), str(partial))
    except Exception as exc:  # zipfile/tarfile raise many types for a damaged archive
        shutil.rmtree(partial, ignore_errors=True)
        raise DatasetError(f"{path}: cannot extract ({type(exc).__name__}: {exc})") from None
    if not (partial / archive.tree).is_dir():
        shutil.rmtree(partial, ignore_errors=True)
        raise DatasetError(f"{path}: extracted, but {archive.tree}/ is missing (not the published layout)")
    shutil.rmtree(extract_root, ignore_errors=True)
    os.replace(partial, extract_root)
    return extract_root / archive.tree


def locate(archive: Archive, *, root: Path, source_dir: Path | None, download: bool) -> tuple[Path, dict[str, Any]]:
    """The directory holding the source's class folders, and what the manifest should record."""
    record: dict[str, Any] = {"name": archive.name, "archive": archive.filename, "md5": archive.md5,
                              "url": archive.url}
    if source_dir is not None:
        source_dir = Path(source_dir)
        trees = (archive.tree, *archive.other_trees)
        for candidate in [source_dir / t for t in trees] + [source_dir / archive.name / t for t in trees]:
            if candidate.is_dir():
                return candidate, {**record, "archive_verified": False, "from": f"extracted tree {candidate}"}
    if archive.url is None:
        where = f"--source-dir {source_dir} holds no {archive.tree}/" if source_dir else "no --source-dir was given"
        raise DatasetError(f"{archive.name} is not on any hub and {where}: download it from {archive.page} and "
                           f"pass --source-dir DIR holding {archive.layout}")
    extract_root = root / ".sources" / archive.name
    if (extract_root / archive.tree).is_dir():
        return extract_root / archive.tree, {**record, "archive_verified": True, "from": "earlier extraction"}
    candidates = ([Path(source_dir) / archive.filename] if source_dir is not None else []) + \
        [root / ".downloads" / archive.filename]
    for path in candidates:
        if path.is_file():
            _verify(path, archive, str(path))
            return _extract(path, archive, extract_root), {**record, "archive_verified": True, "from": str(path)}
    url = archive_url(archive)
    if not download:
        raise DatasetError(f"{archive.filename} ({archive.size}) not found in --source-dir or {root / '.downloads'}; "
                           f"download it from {url} or rerun with --download")
    from torchgeo.datasets.utils import download_url

    target = root / ".downloads"
    target.mkdir(parents=True, exist_ok=True)
    try:
        download_url(url, str(target), filename=archive.filename)
    except Exception as exc:  # urllib raises many types
        (target / archive.filename).unlink(missing_ok=True)
        raise DatasetError(f"{url}: download failed ({type(exc).__name__}: {exc})") from None
    _verify(target / archive.filename, archive, url)
    return _extract(target / archive.filename, archive, extract_root), {**record, "archive_verified": True,
                                                                        "from": url}
