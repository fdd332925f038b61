"""`manifest.json`: what a dataset directory holds, and the checks that it still holds it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import DatasetError
from ..provenance import sha256_file

MANIFEST = "manifest.json"
FORMAT = "ackd-bench-dataset/2"  # 2: dataset version over shard content hashes


def dataset_version(shards: list[dict[str, Any]]) -> str:
    """Hash over every shard's name and content hash (pixels, labels, ids, attributes): equal
    content, equal version, whatever bytes the compressor produced. The file sha256s, which
    `verify_manifest` checks, guard the integrity of this particular copy."""
    lines = sorted(f"{entry['file']} {entry['content_sha256']}" for entry in shards)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own digest field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_manifest(root: str | Path, manifest: dict[str, Any]) -> None:
    """Seal (digest) and write atomically: the only way this tool writes a manifest."""
    from ..provenance import write_json_atomic

    manifest["manifest_sha256"] = manifest_digest(manifest)
    write_json_atomic(Path(root) / MANIFEST, manifest)


def read_manifest(root: str | Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not Path(root).is_dir():
        raise DatasetError(f"{root}: not a directory")
    if not path.is_file():
        raise DatasetError(f"{path}: not found; {root} is not a built dataset (run `ackd-bench build`)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if isinstance(found, str) and found.startswith("ackd-bench-dataset/") and found != FORMAT:
        raise DatasetError(f"{path}: format '{found}' is not this version's '{FORMAT}'; rebuild with "
                           "`ackd-bench build --force`")
    if found != FORMAT:
        raise DatasetError(f"{path}: not an ackd-bench manifest (expected format '{FORMAT}')")
    for key, kind in (("dataset", str), ("dataset_version", str), ("classes", list), ("modalities", dict),
                      ("shards", list), ("counts", dict)):
        if key not in manifest:
            raise DatasetError(f"{path}: missing field '{key}'")
        if not isinstance(manifest[key], kind):
            raise DatasetError(f"{path}: field '{key}' is a {type(manifest[key]).__name__}, expected a {kind.__name__}")
    for modality, spec in manifest["modalities"].items():
        lacking = [k for k in ("bands", "image_size", "mean", "std") if not isinstance(spec, dict) or k not in spec]
        if lacking:
            raise DatasetError(f"{path}: modalities.{modality} lacks {', '.join(lacking)}")
    for entry in manifest["shards"]:
        if not isinstance(entry, dict):
            raise DatasetError(f"{path}: a shard entry is a {type(entry).__name__}, expected an object")
        missing = [k for k in ("file", "modality", "split", "samples", "bytes", "sha256", "content_sha256") if k not in entry]
        if missing:
            raise DatasetError(f"{path}: shard entry {entry.get('file', '?')} lacks {', '.join(missing)}")
    sealed = manifest.get("manifest_sha256")
    if sealed is not None and sealed != manifest_digest(manifest):
        raise DatasetError(f"{path}: edited after the build (its manifest_sha256 does not match its content); restore "
                           "it, or rebuild with `ackd-bench build --force`")
    return manifest


def verify_manifest(root: str | Path, *, checksums: bool = True, progress: bool = False) -> dict[str, Any]:
    """Load the manifest and check every shard it lists: present, same size, same sha256."""
    root = Path(root)
    manifest = read_manifest(root)
    for entry in manifest["shards"]:
        path = root / entry["file"]
        if not path.is_file():
            raise DatasetError(f"{path}: missing (listed in {MANIFEST})")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise DatasetError(f"{path}: truncated or modified: {size} bytes, {MANIFEST} expects {entry['bytes']}")
    if checksums:
        entries = tqdm(manifest["shards"], desc="verify sha256", unit="shard", disable=not progress, leave=False)
        for entry in entries:
            check_sha256(root / entry["file"], entry)
        if dataset_version(manifest["shards"]) != manifest["dataset_version"]:
            raise DatasetError(f"{root / MANIFEST}: dataset_version does not match the shard content hashes it lists")
        check_against_shards(root, manifest)
    return manifest


def check_sha256(path: Path, entry: dict[str, Any], hint: str = "") -> None:
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise DatasetError(f"{path}: sha256 mismatch: {MANIFEST} expects {entry['sha256']}, file has {actual}{hint}")


def pixel_bytes(manifest: dict[str, Any], modality: str | None = None, split: str | None = None) -> int:
    """Bytes of the listed samples' pixels in their stored dtype (what holding them in memory takes).
    Samples are summed over shards, not over `counts`, which counts a multi-label sample once per
    class it carries."""
    import numpy as np

    from .shards import IMAGE_DTYPES

    total = 0
    for entry in manifest["shards"]:
        if (modality or entry["modality"]) != entry["modality"] or (split or entry["split"]) != entry["split"]:
            continue
        spec = manifest["modalities"][entry["modality"]]
        size = spec["image_size"]
        height, width = (size, size) if isinstance(size, int) else size
        itemsize = np.dtype(spec.get("dtype") or IMAGE_DTYPES[entry["modality"]]).itemsize
        total += entry["samples"] * len(spec["bands"]) * height * width * itemsize
    return total


def check_against_shards(root: Path, manifest: dict[str, Any]) -> None:
    """The manifest's classes, bands and per-class counts against what the shards themselves hold."""
    import h5py
    import numpy as np

    from .shards import read_text

    counts: dict[str, dict[str, np.ndarray]] = {}
    classes = list(manifest["classes"])
    for entry in manifest["shards"]:
        path = root / entry["file"]
        with h5py.File(path, "r") as handle:
            stored_classes = read_text(handle.attrs["class_names"])
            stored_bands = read_text(handle.attrs["band_names"])
            labels = handle["labels"][()]
            multi = handle["multilabels"][()] if "multilabels" in handle else None
        bands = manifest["modalities"][entry["modality"]]["bands"]
        if list(stored_classes) != classes or list(stored_bands) != list(bands):
            field = "classes" if list(stored_classes) != classes else f"modalities.{entry['modality']}.bands"
            raise DatasetError(f"{root / MANIFEST}: {field} do not match {path.name} (manifest edited after the build?)")
        per_class = multi.sum(axis=0) if multi is not None else np.bincount(labels, minlength=len(classes))
        split = counts.setdefault(entry["modality"], {}).setdefault(entry["split"], np.zeros(len(classes), np.int64))
        split += per_class.astype(np.int64)
    for modality, splits in counts.items():
        for split, values in splits.items():
            listed = [manifest["counts"][modality][split][c] for c in classes]
            if listed != values.tolist():
                raise DatasetError(f"{root / MANIFEST}: counts.{modality}.{split} {listed} do not match the shards' "
                                   f"labels {values.tolist()} (manifest edited after the build?)")


VERIFIED_DIR = ".verified"  # per-shard stamps: the sha256 checked, for this size and mtime


def verify_for_training(root: str | Path) -> dict[str, Any]:
    """`verify_manifest` with checksums, hashing only shards changed since they were last verified.

    A run must not train on a damaged copy (one flipped byte keeps the size), but hashing every
    shard before each of a sweep's runs would cost minutes. A verified shard gets a stamp under
    `.verified/` (its size, mtime and sha256); a stamp that no longer fits means hash again. A
    read-only dataset directory gets no stamps: its shards are hashed each time.
    """
    root = Path(root)
    manifest = verify_manifest(root, checksums=False)
    for entry in manifest["shards"]:
        path = root / entry["file"]
        stat = path.stat()
        seen = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": entry["sha256"]}
        stamp = root / VERIFIED_DIR / f"{entry['file']}.json"
        try:
            if json.loads(stamp.read_text()) == seen:
                continue
        except (OSError, ValueError):
            pass
        check_sha256(path, entry, " (damaged or modified); rebuild with `ackd-bench build --force`")
        try:
            from ..provenance import write_json_atomic

            stamp.parent.mkdir(exist_ok=True)
            write_json_atomic(stamp, seen)
        except OSError:  # a read-only copy: verified now, again next time
            pass
    check_against_shards(root, manifest)  # labels and attributes only: cheap next to the pixels
    return manifest


def shard_entries(manifest: dict[str, Any], modality: str, split: str) -> list[dict[str, Any]]:
    return [e for e in manifest["shards"] if e["modality"] == modality and e["split"] == split]


def describe(manifest: dict[str, Any]) -> str:
    """The manifest as a human-readable table (what `ackd-bench info` prints)."""
    import pandas as pd

    from .splits import SPLITS

    name = manifest["dataset"] + ("  [SYNTHETIC]" if manifest.get("synthetic") else "")
    lines = [
        f"dataset          {name}",
        f"dataset version  {manifest['dataset_version'][:16]}  (recipe {manifest.get('recipe_hash', '?')[:12]})",
        f"built by         ackd-bench {manifest.get('code_version', '?')} at {manifest.get('created_utc', '?')}",
    ]
    for modality, spec in manifest["modalities"].items():
        h, w = spec["image_size"]
        kind = "multi-label" if spec.get("multilabel") else "single-label"
        lines.append(
            f"{modality.upper():<4} {len(spec['bands']):>2} bands  {h}x{w} {spec['dtype']}  {kind}  "
            f"bands: {' '.join(spec['bands'])}"
        )
    rows = {}
    for modality in manifest["modalities"]:
        for split in SPLITS:
            rows[f"{modality}/{split}"] = manifest["counts"][modality][split]
    table = pd.DataFrame(rows).reindex(manifest["classes"]).fillna(0).astype(int)
    table.loc["samples"] = [sum(e["samples"] for e in manifest["shards"] if f"{e['modality']}/{e['split']}" == column)
                            for column in table.columns]
    table.index.name = "class"
    lines += ["", table.to_string(), ""]
    if any(spec.get("multilabel") for spec in manifest["modalities"].values()):
        lines += ["multi-label sides count a sample in every class it carries", ""]
    total_bytes = sum(e["bytes"] for e in manifest["shards"])
    lines.append(
        f"shards           {len(manifest['shards'])} files, {total_bytes / 1e6:.1f} MB, "
        f"{manifest.get('compression', '?')}, <= {manifest.get('shard_max_samples', '?')} samples each"
    )
    mi = manifest.get("analyses", {}).get("mi")
    if mi:
        paired = "n/a" if mi["mean_paired"] is None else f"{mi['mean_paired']:.3f}"
        lines.append(f"within-class MI  unpaired {mi['mean_unpaired']:.3f}, permutation {mi['mean_permutation']:.3f}, "
                     f"paired {paired} nats ({mi['bins']} bins, {mi['pairs_per_class']} pairs/class)")
    fractions = manifest.get("splits", {}).get("fractions", {})
    if fractions:
        lines.append(
            "splits           " + " / ".join(f"{k} {v:g}" for k, v in fractions.items())
            + f"  (salt '{manifest['splits'].get('salt')}')"
            + "".join(f"; {m.upper()}: the source's official split" for m in manifest["splits"].get("from_source", []))
        )
    return "\n".join(lines)
