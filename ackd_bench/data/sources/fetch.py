"""Finding or downloading a source archive, verifying it, extracting it once.

Order: an extracted tree or the archive in `--source-dir`; an earlier extraction under the build
root; an earlier download; a fresh download over HTTP (from the source's pinned URL or from
`$ACKD_BENCH_MIRROR/<filename>`), which resumes where an interrupted one stopped. Archives are
checked against their MD5 (once; a stamp remembers a verified file); a download that fails is
kept aside as `<name>.corrupt` and the error names the expected and actual checksum and
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

from tqdm.auto import tqdm

from ...errors import DatasetError

MIRROR_ENV = "ACKD_BENCH_MIRROR"


@dataclass(frozen=True)
class Archive:
    name: str
    url: str | None  # None: not on any hub or mirror we can pin; taken from --source-dir only
    filename: str | None
    md5: str | None
    tree: str  # the folder, relative to the extraction root, that holds the class folders
    size: str  # for the docs and error messages, e.g. "2.0 GB"
    max_bytes: int = 0  # what a download may write before it is cut off (0: a local-only source, never fetched)
    other_trees: tuple[str, ...] = ()  # other published layouts accepted in --source-dir
    page: str = ""  # where a local-only source is published
    layout: str = ""  # what a local-only source's folder must hold, for the error message


def md5_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def mirrored(url: str, filename: str) -> str:
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{filename}" if mirror else url


def verify_md5(path: Path, md5: str, url: str, *, keep_aside: bool = True) -> None:
    """Raise on a checksum mismatch; a file we downloaded is moved to `<name>.corrupt` (a user's own
    file in --source-dir is left where it is)."""
    actual = md5_file(path)
    if actual != md5:
        where = ""
        if keep_aside:
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            where = f" (kept aside as {aside.name})"
        raise DatasetError(f"{path}: md5 mismatch for {url}: expected {md5}, got {actual}{where}")


def http_download(url: str, target: Path, max_bytes: int) -> None:
    """Download `url` to `target`, resuming an interrupted `<target>.part` with an HTTP Range request.

    torchgeo's `download_url` restarts from zero, which costs hours on BigEarthNet's 30 GB parts.
    A server that declares or sends more than `max_bytes` (the published size with a margin) is cut
    off and its part removed: a wrong mirror must not fill the disk before the checksum could tell."""
    import requests

    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    try:
        with requests.get(url, headers={"Range": f"bytes={have}-"} if have else {}, stream=True, timeout=60) as reply:
            if reply.status_code == 416 and have:  # the part is already whole
                os.replace(part, target)
                return
            reply.raise_for_status()
            if reply.status_code != 206:  # the server ignored the range: start again
                have = 0
            remaining = int(reply.headers.get("Content-Length", 0) or 0) or None
            if remaining and have + remaining > max_bytes:
                raise DatasetError(f"{url}: the server offers {have + remaining:,} bytes for a file of at most "
                                   f"{max_bytes:,}; refused (a wrong {MIRROR_ENV} or URL?)")
            with open(part, "ab" if have else "wb") as handle, \
                    tqdm(total=(have + remaining) if remaining else None, initial=have, unit="B", unit_scale=True,
                         desc=f"download {target.name}", disable=None) as bar:
                written = have
                for block in reply.iter_content(1 << 16):  # small blocks: an interruption loses little
                    written += len(block)
                    if written > max_bytes:
                        handle.close()
                        part.unlink(missing_ok=True)
                        raise DatasetError(f"{url}: the server sent more than {max_bytes:,} bytes for a file of at "
                                           f"most that size; stopped and removed {part.name} (a wrong "
                                           f"{MIRROR_ENV} or URL?)")
                    handle.write(block)
                    bar.update(len(block))
                handle.flush()
                os.fsync(handle.fileno())
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status is not None and 400 <= status < 500:  # the file is not there: rerunning cannot help
            hint = f"; {MIRROR_ENV} is set to {os.environ[MIRROR_ENV]}" if os.environ.get(MIRROR_ENV) else ""
            raise DatasetError(f"{url}: HTTP {status}: the server does not serve this file{hint}; check the URL, or "
                               "pass the file with --source-dir") from None
        raise DatasetError(f"{url}: download failed (HTTP {status}); rerun to resume from {part.name} "
                           f"({part.stat().st_size if part.exists() else 0} bytes)") from None
    except requests.RequestException as exc:
        raise DatasetError(f"{url}: download failed ({type(exc).__name__}: {exc}); rerun to resume from "
                           f"{part.name} ({part.stat().st_size if part.exists() else 0} bytes)") from None
    os.replace(part, target)


def fetch_file(filename: str, url: str, md5: str, size: str, *, root: Path, source_dir: Path | None,
               download: bool, max_bytes: int) -> tuple[Path, str]:
    """A verified local copy of one published file: from --source-dir, an earlier download, or `url`.

    A verified file gets a stamp (path, size, mtime) under `<root>/.sources/verified/`, so multi-GB
    parts are not hashed again on every rebuild; nothing is written into --source-dir."""
    candidates = ([Path(source_dir) / filename] if source_dir is not None else []) + [root / ".downloads" / filename]
    for path in candidates:
        if path.is_file():
            _verify_once(path, md5, str(path), stamps=root / ".sources" / "verified",
                         keep_aside=path.parent == root / ".downloads")
            return path, str(path)
    url = mirrored(url, filename)
    if not download:
        raise DatasetError(f"{filename} ({size}) not found in --source-dir or {root / '.downloads'}; "
                           f"download it from {url} or rerun with --download")
    target = root / ".downloads" / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    http_download(url, target, max_bytes)
    _verify_once(target, md5, url, stamps=root / ".sources" / "verified")
    return target, url


def _verify_once(path: Path, md5: str, url: str, *, stamps: Path, keep_aside: bool = True) -> None:
    """Verify `path` unless a stamp in the build root says this very file (path, size, mtime) passed."""
    stamp = stamps / f"{path.name}.md5-ok"
    facts = f"{path.resolve()} {md5} {path.stat().st_size} {path.stat().st_mtime_ns}"
    if stamp.is_file() and stamp.read_text() == facts:
        return
    verify_md5(path, md5, url, keep_aside=keep_aside)
    stamps.mkdir(parents=True, exist_ok=True)
    stamp.write_text(facts)


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
    path, origin = fetch_file(archive.filename, archive.url, archive.md5, archive.size, max_bytes=archive.max_bytes, root=root,
                              source_dir=source_dir, download=download)
    return _extract(path, archive, extract_root), {**record, "archive_verified": True, "from": origin}
