"""`ackd-bench build`: a recipe's sources -> split plan -> shards -> manifest.

Resumable: complete `.partial` shards whose samples match the plan are kept, so rerunning an
interrupted build only writes what is missing. Only the manifest, written last and atomically,
marks a directory as a finished dataset.
"""

from __future__ import annotations

import errno
import re
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..errors import AckdError, DatasetError
from ..provenance import code_version, sha256_file
from .card import write_card
from .manifest import (MANIFEST, Manifest, Modality, ShardEntry, Splits, dataset_version, read_manifest,
                       verify_manifest, write_manifest)
from .recipe import Recipe, load_recipe, recipe_hash
from .shards import (
    IMAGE_DTYPES, MODALITIES, PARTIAL_SUFFIX, EncodedSample, SampleRef, as_stored, band_statistics, content_digest,
    encode_sample,
    finalize, has_paired, has_statistics, partial_matches, shard_name, write_partial,
)
from .splits import SPLITS, assign_split


class ModalitySource(Protocol):
    bands: list[str]
    paired: Any  # the source of each sample's paired RGB image (stored in the shard), or None
    paired_absent: dict[str, str] | None  # {"source", "reason"} where the recipe's paired control is missing

    def refs(self) -> list[SampleRef]: ...

    def load(self, ref: SampleRef) -> np.ndarray: ...

    def provenance(self) -> dict[str, Any]: ...


def _toy(recipe: Recipe, **_: Any) -> dict[str, ModalitySource]:
    from .toy import toy_sources

    return toy_sources(recipe)


def _archives(recipe: Recipe, *, root: Path, source_dir: str | Path | None = None, download: bool = True,
              require_paired: bool = False, **_: Any) -> dict[str, ModalitySource]:
    """Each side from its public source(s) (`modalities.<side>.source[s]`), found or downloaded."""
    from .sources.side import open_side

    return {m: open_side(recipe, m, root=root, source_dir=Path(source_dir) if source_dir else None, download=download,
                         require_paired=require_paired)
            for m in MODALITIES}


SOURCE_BUILDERS: dict[str, Callable[..., dict[str, ModalitySource]]] = {"toy": _toy, "archives": _archives}


@dataclass(frozen=True)
class PlannedShard:
    modality: str
    split: str
    index: int
    refs: tuple[SampleRef, ...]

    @property
    def name(self) -> str:
        return shard_name(self.modality, self.split, self.index)


@dataclass(frozen=True)
class BuildResult:
    root: Path
    status: str  # "built" or "up-to-date"
    manifest: Manifest


def plan_shards(refs: Sequence[SampleRef], modality: str, salt: str, fractions: dict, max_samples: int) -> list[PlannedShard]:
    by_split: dict[str, list[SampleRef]] = {split: [] for split in SPLITS}
    for ref in refs:
        by_split[ref.split or assign_split(ref.source_id, salt, fractions)].append(ref)
    planned = []
    for split in SPLITS:
        members = sorted(by_split[split], key=lambda r: r.source_id)
        for index, start in enumerate(range(0, len(members), max_samples)):
            planned.append(PlannedShard(modality, split, index, tuple(members[start:start + max_samples])))
    return planned


BUILD_MARKER = ".ackd-build"  # a dataset folder this tool made: it may replace its own files there
# the names a build gives its files: shards, their partial and in-progress forms, the card, the
# analyses (data/shards.py, data/card.py, data/analyses.py); anything else in the folder is a user's
SHARD_NAME = re.compile(r"(ms|rgb)-(train|val|test)-\d{5}\.h5(\.partial)?")
WORK_NAME = re.compile(r"\.(ms|rgb)-(train|val|test)-\d{5}\.h5\.(writing|finalizing)")
TOOL_FILES = ("DATASET.md", "analysis/mi.csv", "analysis/mi.png")


def _tool_files(root: Path, work_only: bool = False) -> list[Path]:
    """The files of a build in `root` by the names it gives them (never a user's file of another name):
    with `work_only`, only the hidden in-progress files an interrupted build leaves."""
    found = [p for p in root.iterdir() if p.is_file() and not p.is_symlink()
             and (WORK_NAME.fullmatch(p.name) or (not work_only and SHARD_NAME.fullmatch(p.name)))]
    if not work_only:
        found += [root / name for name in TOOL_FILES if (root / name).is_file()]
    return sorted(found)


def _claim(root: Path) -> None:
    """Refuse a folder this tool did not make (nothing there is changed), then mark it as the tool's.
    A folder of an earlier version's build, whose manifest reads as this tool's, is adopted."""
    if (root / BUILD_MARKER).is_file():
        return
    if root.is_dir() and any(root.iterdir()):
        try:
            read_manifest(root)
        except (AckdError, OSError, ValueError):
            users = sorted(p.name for p in root.iterdir())[:4]
            raise DatasetError(f"{root}: not empty and not a dataset folder of ackd-bench (no {BUILD_MARKER}; it holds "
                               f"{', '.join(users)}); nothing was changed: give --out a new or empty folder") from None
    root.mkdir(parents=True, exist_ok=True)
    (root / BUILD_MARKER).write_text("ackd-bench dataset folder: the tool may replace its own files here\n")


def paired_absent(manifest: Manifest) -> bool:
    """Whether a build went without a paired control its recipe names (a rebuild tries to add it)."""
    return any(spec.paired_status == "absent" for spec in manifest.modalities.values())


def _check_existing(root: Path, digest: str) -> Manifest | None:
    """The manifest of a finished build of this recipe, None when there is none to keep."""
    if not (root / MANIFEST).exists():
        return None
    try:
        manifest = verify_manifest(root, checksums=True)
    except DatasetError as exc:
        raise DatasetError(f"{exc}; rerun with --force to rebuild") from None
    if manifest.recipe_hash != digest:
        raise DatasetError(
            f"{root / MANIFEST}: built from another version of recipe '{manifest.dataset}'; "
            "rerun with --force to rebuild"
        )
    return manifest


def class_counts(plans: Sequence[PlannedShard], classes: Sequence[str]) -> dict[str, dict[str, int]]:
    counts = {split: {c: 0 for c in classes} for split in SPLITS}
    for plan in plans:
        for ref in plan.refs:
            for label in ref.multilabel or (ref.label,):  # a multi-label sample counts in each of its classes
                counts[plan.split][classes[label]] += 1
    return counts


def _existing(root: Path, plan: PlannedShard, digest: str, paired: bool = False) -> Path | None:
    """A complete shard file (final or partial) holding exactly the planned samples (and their
    paired images, where the paired control is now available: a rebuild then adds it)."""
    final = root / plan.name
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    return next((p for p in (final, partial)
                 if p.exists() and partial_matches(p, plan.refs, digest) and (not paired or has_paired(p))), None)


@dataclass(frozen=True)
class EncodingLoader:
    """Decode a sample and run it through the shard's filters, in a worker process."""

    load: Callable[[SampleRef], Any]
    dtype: str
    compression: str
    paired: bool

    def __call__(self, ref: SampleRef) -> EncodedSample | tuple[EncodedSample, EncodedSample]:
        item = self.load(ref)
        if self.paired:
            image, pair = item
            return (encode_sample(as_stored(image, self.dtype, ref.source_id), self.compression),
                    encode_sample(as_stored(pair, np.uint8, ref.source_id), self.compression))
        return encode_sample(as_stored(item, self.dtype, ref.source_id), self.compression)


def _write_shard(root: Path, plan: PlannedShard, source: ModalitySource, recipe: Recipe, digest: str, bar,
                 pool: ProcessPoolExecutor | None = None) -> None:
    if _existing(root, plan, digest, source.paired is not None) is not None:  # kept from an interrupted run
        bar.update(len(plan.refs))
        return
    (root / plan.name).unlink(missing_ok=True)

    paired = source.paired is not None
    load = source.load_with_pair if paired else source.load
    if pool is not None:  # workers also compress, so that this process only writes bytes
        load = EncodingLoader(load, np.dtype(IMAGE_DTYPES[plan.modality]).str, recipe.shards.compression, paired)

    def images():
        # worker processes decode while this one compresses and writes; order is preserved
        decoded = pool.map(load, plan.refs, chunksize=16) if pool else map(load, plan.refs)
        for image in decoded:
            yield image
            bar.update(1)

    size = recipe.image_size
    multilabel = recipe.modalities[plan.modality].multilabel
    attrs = {
        "band_names": list(source.bands), "class_names": list(recipe.classes),
        "dataset": recipe.name, "recipe_hash": digest, "split": plan.split,
    }
    write_partial(
        root / plan.name, plan.refs, images(), modality=plan.modality, shape=(len(source.bands), size, size),
        attrs=attrs, compression=recipe.shards.compression,
        num_multilabels=len(recipe.classes) if multilabel else None,
        paired_shape=(3, size, size) if paired else None,
    )


def _provenance(sources: dict[str, ModalitySource]) -> dict[str, Any]:
    records = {modality: sources[modality].provenance() for modality in MODALITIES}
    for modality in MODALITIES:
        if sources[modality].paired is not None:
            records[f"{modality}_paired_rgb"] = sources[modality].paired.provenance()
    return records


def build_dataset(name: str, out: str | Path, **kwargs: Any) -> BuildResult:
    """Build (or resume building) a dataset; a full disk is one clear error and a resumable state."""
    from filelock import FileLock, Timeout

    target = Path(out).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.parent / f".{target.name}.build.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise DatasetError(f"{out}: another build of this folder is running; wait for it to finish") from None
    try:
        return _build(name, out, **kwargs)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise
        raise DatasetError(f"{exc.filename or out}: {os.strerror(exc.errno)} while building '{name}'; free disk space "
                           "and rerun the build to resume") from None
    finally:
        lock.release()


def _build(
    name: str,
    out: str | Path,
    *,
    force: bool = False,
    progress: bool = True,
    source_dir: str | Path | None = None,
    download: bool = True,
    workers: int = 0,
    recipe: Recipe | None = None,  # a variant of the named recipe (tests build a smaller toy)
    require_paired: bool = False,
) -> BuildResult:
    recipe = recipe if recipe is not None else load_recipe(name)
    digest = recipe_hash(recipe)
    root = Path(out)
    _claim(root)
    if force:
        (root / MANIFEST).unlink(missing_ok=True)
        for path in _tool_files(root):
            path.unlink()
    else:
        existing = _check_existing(root, digest)
        if existing is not None and not paired_absent(existing):
            return BuildResult(root, "up-to-date", existing)
    for stale in _tool_files(root, work_only=True):
        stale.unlink()

    started = time.time()
    builder = SOURCE_BUILDERS.get(recipe.source)
    if builder is None:
        raise DatasetError(f"recipe '{name}': unknown source '{recipe.source}'")
    sources = builder(recipe, root=root, source_dir=source_dir, download=download, require_paired=require_paired)
    for modality in MODALITIES:
        if sources[modality].paired_absent is not None:
            absent = sources[modality].paired_absent
            print(f"ackd-bench: building without the {modality.upper()} side's paired control ({absent['source']}): "
                  f"{absent['reason']}. It serves only the MI and transport-cost analyses' paired control, never "
                  "training; add its files and rebuild to add it, or pass --require-paired to stop instead",
                  file=sys.stderr)
    fractions, salt = recipe.splits.fractions, recipe.splits.salt
    max_samples = recipe.shards.max_samples
    plans = {m: plan_shards(sources[m].refs(), m, salt, fractions, max_samples) for m in MODALITIES}

    total = sum(len(p.refs) for shards in plans.values() for p in shards)
    pool = ProcessPoolExecutor(workers) if workers > 0 else None
    try:
        with tqdm(total=total, desc=f"build {name}", unit="img", disable=not progress) as bar:
            for modality in MODALITIES:
                for plan in plans[modality]:
                    _write_shard(root, plan, sources[modality], recipe, digest, bar, pool)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    entries, modalities = [], {}
    for modality in MODALITIES:
        files = [_existing(root, plan, digest, sources[modality].paired is not None) for plan in plans[modality]]
        mean, std = band_statistics([f for f, plan in zip(files, plans[modality]) if plan.split == "train"])
        for path, plan in zip(files, plans[modality]):
            final = root / plan.name
            if path != final:
                finalize(path, mean, std)
            elif not has_statistics(final, mean, std):
                raise DatasetError(f"{final}: left by a build of other data; rerun with --force to rebuild")
            else:  # finished before a kill that came between finalize's rename and its removal of the partial
                final.with_name(final.name + PARTIAL_SUFFIX).unlink(missing_ok=True)
            entries.append(ShardEntry(file=final.name, modality=modality, split=plan.split, samples=len(plan.refs),
                                      bytes=final.stat().st_size, sha256=sha256_file(final),
                                      content_sha256=content_digest(final)))
        side = recipe.modalities[modality]
        size = recipe.image_size
        paired = None
        if sources[modality].paired is not None:
            paired = {"status": "present", "source": sources[modality].paired.name, "bands": ["R", "G", "B"]}
        elif sources[modality].paired_absent is not None:
            paired = {"status": "absent", **sources[modality].paired_absent}
        modalities[modality] = Modality(
            bands=tuple(sources[modality].bands), image_size=(size, size), dtype=np.dtype(IMAGE_DTYPES[modality]).name,
            mean=tuple(mean.tolist()), std=tuple(std.tolist()), multilabel=side.multilabel,
            rgb_bands=side.rgb_bands, paired_rgb=paired, band_sets=dict(side.band_sets) or None)

    manifest = Manifest(
        dataset=name, synthetic=recipe.synthetic, dataset_version=dataset_version(entries),
        recipe_hash=digest, recipe=recipe.raw, code_version=code_version(),
        created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), build_seconds=round(time.time() - started, 3),
        classes=recipe.classes, modalities=modalities, compression=recipe.shards.compression,
        shard_max_samples=max_samples,
        splits=Splits(fractions, salt, tuple(m for m in MODALITIES if any(r.split for p in plans[m] for r in p.refs))),
        counts={m: class_counts(plans[m], recipe.classes) for m in MODALITIES}, shards=tuple(entries),
        sources=_provenance(sources),
    )
    write_manifest(root, manifest)
    write_card(root, manifest)
    return BuildResult(root, "built", read_manifest(root))

