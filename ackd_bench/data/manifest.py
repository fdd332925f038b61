"""`manifest.json`: what a dataset directory holds, and the checks that it still holds it."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..errors import AckdError, DatasetError
from ..provenance import sha256_file
from ..untrusted import NUMBER, inside, plain_name, typed
from .bands import check_band_sets
from .recipe import Recipe
from .shards import IMAGE_DTYPES, MODALITIES
from .splits import SPLITS, split_parts

MANIFEST = "manifest.json"
FORMAT = "ackd-bench-dataset/2"  # 2: dataset version over shard content hashes


def dataset_version(shards: Iterable[ShardEntry]) -> str:
    """Hash over every shard's name and content hash (pixels, labels, ids, attributes): equal
    content, equal version, whatever bytes the compressor produced. The file sha256s, which
    `verify_manifest` checks, guard the integrity of this particular copy."""
    lines = sorted(f"{entry.file} {entry.content_sha256}" for entry in shards)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own digest field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_ID_BYTES = 256  # a source id is a path in its archive: BigEarthNet's, the longest, are under 80 bytes
MAX_SIDE = 4096  # pixels: a larger image size is a crafted manifest, not a remote-sensing patch


def _count(value: Any, what: str) -> int:
    if not typed(value, (int,)) or value < 0:
        raise AckdError(f"{what} is {value!r}, expected a non-negative integer")
    return value


def _optional(value: Any, kinds: tuple[type, ...], what: str) -> Any:
    if value is not None and not typed(value, kinds):
        raise AckdError(f"field '{what}' is a {type(value).__name__}, expected {' or '.join(k.__name__ for k in kinds)}")
    return value


@dataclass(frozen=True)
class ShardEntry:
    """One HDF5 shard of the dataset's folder: what it holds and the hashes that guard it."""

    file: str
    modality: str
    split: str
    samples: int
    bytes: int
    sha256: str
    content_sha256: str

    @classmethod
    def from_json(cls, entry: Any) -> ShardEntry:
        if not isinstance(entry, dict):
            raise AckdError(f"a shard entry is a {type(entry).__name__}, expected an object")
        missing = [f.name for f in fields(cls) if f.name not in entry]
        if missing:
            raise AckdError(f"shard entry {str(entry.get('file', '?'))[:80]!r} lacks {', '.join(missing)}")
        name = plain_name(entry["file"], "shard entry 'file'")
        if not name.endswith(".h5"):
            raise AckdError(f"shard entry 'file' {name!r}: expected an .h5 file name")
        if entry["modality"] not in MODALITIES or entry["split"] not in SPLITS:
            raise AckdError(f"shard entry {name!r}: modality {entry['modality']!r} / split {entry['split']!r}, "
                            f"expected one of {', '.join(MODALITIES)} / {', '.join(SPLITS)}")
        _count(entry["samples"], f"shard entry {name!r}: samples")
        _count(entry["bytes"], f"shard entry {name!r}: bytes")
        for key in ("sha256", "content_sha256"):
            if not isinstance(entry[key], str) or not HEX64.fullmatch(entry[key]):
                raise AckdError(f"shard entry {name!r}: {key} is not a sha256 hex digest")
        return cls(**{f.name: entry[f.name] for f in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Modality:
    """One side (ms or rgb): its bands, pixel size and dtype, and the train split's per-band statistics."""

    bands: tuple[str, ...]
    image_size: tuple[int, int]
    dtype: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    multilabel: bool = False
    rgb_bands: tuple[str, ...] | None = None  # the MS bands that make its pseudo-RGB
    # the paired RGB control (the MI and transport-cost analyses): status present|absent, and where it
    # came from or why it is missing; free-form provenance, read only for its status
    paired_rgb: dict[str, Any] | None = None
    # the recipe's named selections of `bands` (data/bands.py); None where the recipe named none
    band_sets: dict[str, tuple[str, ...]] | None = None

    def selected(self, bands: Sequence[str]) -> Modality:
        """This side as a run that feeds `bands` (stored bands, in feeding order) sees it: their
        names and train statistics, in that order."""
        missing = [b for b in bands if b not in self.bands]
        if missing or not bands:
            raise AckdError(f"bands {' '.join(map(str, bands)) or '(none)'} selected, but the dataset stores "
                            f"{' '.join(self.bands)}" + (f" (not {' '.join(map(str, missing))})" if missing else ""))
        index = [self.bands.index(b) for b in bands]
        return replace(self, bands=tuple(bands), mean=tuple(self.mean[i] for i in index),
                       std=tuple(self.std[i] for i in index), band_sets=None)

    @property
    def paired_status(self) -> str | None:
        return None if self.paired_rgb is None else self.paired_rgb.get("status", "present")

    @classmethod
    def from_json(cls, spec: Any, modality: str) -> Modality:
        lacking = [k for k in ("bands", "image_size", "dtype", "mean", "std") if not isinstance(spec, dict) or k not in spec]
        if lacking:
            raise AckdError(f"modalities.{modality} lacks {', '.join(lacking)}")
        bands = spec["bands"]
        if not isinstance(bands, list) or not bands or not all(isinstance(b, str) and b for b in bands):
            raise AckdError(f"modalities.{modality}.bands must be a non-empty list of band names")
        size = spec["image_size"]
        if not (isinstance(size, list) and len(size) == 2 and all(1 <= _count(s, f"modalities.{modality}.image_size")
                                                                   <= MAX_SIDE for s in size)):
            raise AckdError(f"modalities.{modality}.image_size is {size!r}, expected [height, width] of 1 to {MAX_SIDE}")
        for key in ("mean", "std"):
            values = spec[key]
            if not (isinstance(values, list) and len(values) == len(bands)
                    and all(typed(v, NUMBER) and math.isfinite(v) for v in values)
                    and (key == "mean" or all(v > 0 for v in values))):
                raise AckdError(f"modalities.{modality}.{key} must hold one finite number per band"
                                + (", each above 0" if key == "std" else ""))
        if spec["dtype"] != np.dtype(IMAGE_DTYPES[modality]).name:
            raise AckdError(f"modalities.{modality}.dtype is {spec.get('dtype')!r}, expected "
                            f"{np.dtype(IMAGE_DTYPES[modality]).name}")
        for key, kinds in MODALITY_OPTIONAL.items():
            if spec.get(key) is not None and not isinstance(spec[key], kinds):
                raise AckdError(f"modalities.{modality}.{key} is a {type(spec[key]).__name__}, expected "
                                f"{' or '.join(k.__name__ for k in kinds)}")
        rgb_bands = spec.get("rgb_bands")
        if rgb_bands is not None and not all(b in bands for b in rgb_bands):
            raise AckdError(f"modalities.{modality}.rgb_bands must name bands of modalities.{modality}.bands")
        band_sets = None
        if spec.get("band_sets") is not None:
            if modality != "ms":
                raise AckdError(f"modalities.{modality}.band_sets: only the MS side selects bands")
            band_sets = check_band_sets(spec["band_sets"], bands, f"modalities.{modality}.band_sets")
        return cls(bands=tuple(bands), image_size=(size[0], size[1]), dtype=spec["dtype"], mean=tuple(spec["mean"]),
                   std=tuple(spec["std"]), multilabel=bool(spec.get("multilabel") or False),
                   rgb_bands=None if rgb_bands is None else tuple(rgb_bands), paired_rgb=spec.get("paired_rgb"),
                   band_sets=band_sets)

    def to_json(self) -> dict[str, Any]:
        spec = {"bands": list(self.bands), "dtype": self.dtype, "image_size": list(self.image_size),
                "multilabel": self.multilabel, "mean": list(self.mean), "std": list(self.std)}
        if self.rgb_bands is not None:
            spec["rgb_bands"] = list(self.rgb_bands)
        if self.paired_rgb is not None:
            spec["paired_rgb"] = self.paired_rgb
        if self.band_sets is not None:
            spec["band_sets"] = {name: list(bands) for name, bands in self.band_sets.items()}
        return spec


MODALITY_OPTIONAL: dict[str, tuple[type, ...]] = {"multilabel": (bool,), "rgb_bands": (list, type(None)),
                                                   "paired_rgb": (dict,), "dtype": (str,), "band_sets": (dict,)}


@dataclass(frozen=True)
class Splits:
    """How samples were split: fractions by sha256(salt, source id), or the source's own split for the
    modalities named in `from_source`."""

    fractions: dict[str, float]
    salt: str | None = None
    from_source: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, splits: Any) -> Splits:
        _optional(splits.get("fractions"), (dict,), "splits.fractions")
        _optional(splits.get("salt"), (str,), "splits.salt")
        _optional(splits.get("from_source"), (list,), "splits.from_source")
        fractions = splits.get("fractions", {})
        if not all(isinstance(k, str) and isinstance(v, NUMBER) for k, v in fractions.items()):
            raise AckdError("field 'splits.fractions' must map split names to numbers")
        if not all(isinstance(v, str) for v in splits.get("from_source", [])):
            raise AckdError("field 'splits.from_source' must list modality names")
        return cls(dict(fractions), splits.get("salt"), tuple(splits.get("from_source", [])))

    def to_json(self) -> dict[str, Any]:
        return {"fractions": self.fractions, "salt": self.salt, "from_source": list(self.from_source)}


@dataclass(frozen=True)
class MiSummary:
    """The within-class MI analysis as the manifest records it (data/mi.py computes it)."""

    mean_unpaired: float
    mean_permutation: float
    mean_paired: float | None
    bins: int
    pairs_per_class: int
    estimator: str = ""
    seed: int | None = None
    per_class: dict[str, dict[str, float | None]] = field(default_factory=dict)  # class -> mi_unpaired, ...
    csv: str | None = None  # the per-class table's file name, beside the plot

    @classmethod
    def from_json(cls, mi: Any) -> MiSummary:
        for key, kinds in (("mean_unpaired", NUMBER), ("mean_permutation", NUMBER),
                           ("mean_paired", (*NUMBER, type(None))), ("bins", (int,)), ("pairs_per_class", (int,))):
            if key not in mi:
                raise AckdError("field 'analyses.mi' must hold mean_unpaired, mean_permutation, mean_paired, bins "
                                "and pairs_per_class")
            _optional(mi[key], kinds, f"analyses.mi.{key}")
        for key, kinds in (("estimator", (str,)), ("seed", (int,)), ("per_class", (dict,)), ("csv", (str,))):
            _optional(mi.get(key), kinds, f"analyses.mi.{key}")
        per_class = mi.get("per_class") or {}
        if not all(isinstance(v, dict) and all(typed(x, (*NUMBER, type(None))) for x in v.values())
                   for v in per_class.values()):
            raise AckdError("field 'analyses.mi.per_class' must map classes to their MI values")
        return cls(**{f.name: mi[f.name] for f in fields(cls) if f.name in mi})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Manifest:
    """`manifest.json`: what a dataset folder holds. Built by `data/build.py`, read (and checked as
    untrusted input) by `read_manifest`, which every reader goes through."""

    dataset: str
    dataset_version: str
    classes: tuple[str, ...]
    modalities: dict[str, Modality]
    shards: tuple[ShardEntry, ...]
    counts: dict[str, dict[str, dict[str, int]]]  # modality -> split -> class -> samples (multi-label: per class)
    recipe_hash: str | None = None
    # the recipe it was built from, as the recipe file held it: hashed as it is (recipe_hash) and
    # written back unchanged; `built_recipe()` reads its settings
    recipe: dict[str, Any] = field(default_factory=dict)
    code_version: str | None = None
    created_utc: str | None = None
    build_seconds: float | None = None
    compression: str | None = None
    shard_max_samples: int | None = None
    synthetic: bool = False
    splits: Splits | None = None
    # per side, what the sources' readers know of them (name, URL, licence, citation, parts): free-form
    # provenance, rendered into the card and the hub's metadata, never computed with
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    mi: MiSummary | None = None

    @property
    def recipe_source(self) -> str | None:
        return self.recipe.get("source")

    def built_recipe(self) -> Recipe | None:
        """The recipe it was built from, checked and typed as any recipe is; None where it records none."""
        return Recipe.from_dict(self.recipe, f"{MANIFEST}: field 'recipe'") if self.recipe else None

    def entries(self, modality: str, split: str) -> list[ShardEntry]:
        return [e for e in self.shards if e.modality == modality and e.split == split]

    def samples(self) -> int:
        return sum(e.samples for e in self.shards)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """The manifest's fields, each with the type and range its readers rely on: names are plain
        names (a shard `file` can only be a file in the dataset's own folder)."""
        for key, kind in (("dataset", str), ("dataset_version", str), ("classes", list), ("modalities", dict),
                          ("shards", list), ("counts", dict)):
            if key not in data:
                raise AckdError(f"missing field '{key}'")
            if not isinstance(data[key], kind):
                raise AckdError(f"field '{key}' is a {type(data[key]).__name__}, expected a {kind.__name__}")
        plain_name(data["dataset"], "field 'dataset'")
        classes = data["classes"]
        if not classes or not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
            raise AckdError("field 'classes' must be a non-empty list of distinct names")
        if set(data["modalities"]) != set(MODALITIES):
            raise AckdError(f"field 'modalities' must define exactly {' and '.join(MODALITIES)}")
        modalities = {m: Modality.from_json(spec, m) for m, spec in data["modalities"].items()}
        shards = tuple(ShardEntry.from_json(entry) for entry in data["shards"])
        optional = {key: _optional(data.get(key), kinds, key) for key, kinds in OPTIONAL_FIELDS.items()}
        _optional((data.get("recipe") or {}).get("source"), (str,), "recipe.source")
        sources = optional["sources"] or {}
        if not all(isinstance(v, dict) and isinstance(v.get("licence", ""), str) for v in sources.values()):
            raise AckdError("field 'sources' must map each side to an object (its licence a string)")
        analyses = optional["analyses"] or {}
        mi = _optional(analyses.get("mi"), (dict,), "analyses.mi")
        counts = data["counts"]
        for modality in MODALITIES:
            for split in SPLITS:
                per_class = counts.get(modality, {}).get(split) if isinstance(counts.get(modality), dict) else None
                if not isinstance(per_class, dict) or set(per_class) != set(classes):
                    raise AckdError(f"counts.{modality}.{split} must give a count for each class")
                for c, n in per_class.items():
                    _count(n, f"counts.{modality}.{split}.{c}")
        return cls(
            dataset=data["dataset"], dataset_version=data["dataset_version"], classes=tuple(classes),
            modalities=modalities, shards=shards, counts=counts, recipe_hash=optional["recipe_hash"],
            recipe=optional["recipe"] or {}, code_version=optional["code_version"],
            created_utc=optional["created_utc"], build_seconds=optional["build_seconds"],
            compression=optional["compression"], shard_max_samples=optional["shard_max_samples"],
            synthetic=bool(optional["synthetic"]),
            splits=None if optional["splits"] is None else Splits.from_json(optional["splits"]),
            sources=sources, mi=None if mi is None else MiSummary.from_json(mi),
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest as `write_manifest` stores it (before the seal)."""
        body: dict[str, Any] = {
            "format": FORMAT, "dataset": self.dataset, "synthetic": self.synthetic,
            "dataset_version": self.dataset_version, "recipe_hash": self.recipe_hash, "recipe": self.recipe,
            "code_version": self.code_version, "created_utc": self.created_utc, "build_seconds": self.build_seconds,
            "classes": list(self.classes), "modalities": {m: spec.to_json() for m, spec in self.modalities.items()},
            "compression": self.compression, "shard_max_samples": self.shard_max_samples,
            "splits": None if self.splits is None else self.splits.to_json(), "counts": self.counts,
            "shards": [e.to_json() for e in self.shards], "sources": self.sources,
        }
        if self.mi is not None:
            body["analyses"] = {"mi": self.mi.to_json()}
        return {k: v for k, v in body.items() if v is not None}


# optional top-level fields and their types
OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {
    "recipe_hash": (str,), "code_version": (str,), "created_utc": (str,), "build_seconds": NUMBER,
    "compression": (str,), "shard_max_samples": (int,), "synthetic": (bool,), "recipe": (dict,), "sources": (dict,),
    "splits": (dict,), "analyses": (dict,),
}


def write_manifest(root: str | Path, manifest: Manifest) -> None:
    """Seal (digest) and write atomically: the only way this tool writes a manifest."""
    write_sealed(root, manifest.to_json())


def write_sealed(root: str | Path, body: dict[str, Any]) -> None:
    """`body` as a sealed manifest.json, as it is: tests write crafted manifests with it."""
    from ..provenance import write_json_atomic

    write_json_atomic(Path(root) / MANIFEST, {**body, "manifest_sha256": manifest_digest(body)})


def read_manifest(root: str | Path) -> Manifest:
    path = Path(root) / MANIFEST
    if not Path(root).is_dir():
        raise DatasetError(f"{root}: not a directory")
    if not path.is_file():
        raise DatasetError(f"{path}: not found; {root} is not a built dataset (run `ackd-bench build`)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    found = data.get("format") if isinstance(data, dict) else None
    if isinstance(found, str) and found.startswith("ackd-bench-dataset/") and found != FORMAT:
        raise DatasetError(f"{path}: format '{found}' is not this version's '{FORMAT}'; rebuild with "
                           "`ackd-bench build --force`")
    if found != FORMAT:
        raise DatasetError(f"{path}: not an ackd-bench manifest (expected format '{FORMAT}')")
    try:  # the fields first: a hand-edited manifest is told what is wrong with it, not only that it was edited
        manifest = Manifest.from_json(data)
    except AckdError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    sealed = data.get("manifest_sha256")
    if sealed is None:
        raise DatasetError(f"{path}: not sealed (no manifest_sha256): not written by `ackd-bench build`; rebuild with "
                           "`ackd-bench build --force`")
    if sealed != manifest_digest(data):
        raise DatasetError(f"{path}: edited after the build (its manifest_sha256 does not match its content); restore "
                           "it, or rebuild with `ackd-bench build --force`")
    return manifest


def verify_manifest(root: str | Path, *, checksums: bool = True, progress: bool = False) -> Manifest:
    """Load the manifest and check every shard it lists: present, same size, same sha256."""
    root = Path(root)
    manifest = read_manifest(root)
    for entry in manifest.shards:
        path = shard_path(root, entry)
        if not path.is_file():
            raise DatasetError(f"{path}: missing (listed in {MANIFEST})")
        size = path.stat().st_size
        if size != entry.bytes:
            raise DatasetError(f"{path}: truncated or modified: {size} bytes, {MANIFEST} expects {entry.bytes}")
    if checksums:
        entries = tqdm(manifest.shards, desc="verify sha256", unit="shard", disable=not progress, leave=False)
        for entry in entries:
            check_sha256(shard_path(root, entry), entry)
        check_against_shards(root, manifest)
    return manifest


def shard_path(root: Path, entry: ShardEntry) -> Path:
    """A listed shard's path: a file of the dataset's own folder (not a link out of it)."""
    path = root / entry.file
    try:
        inside(path, root, "shard")
    except AckdError as exc:
        raise DatasetError(f"{root / MANIFEST}: {exc}") from None
    return path


def check_sha256(path: Path, entry: ShardEntry, hint: str = "") -> None:
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise DatasetError(f"{path}: sha256 mismatch: {MANIFEST} expects {entry.sha256}, file has {actual}{hint}")


def pixel_bytes(manifest: Manifest, modality: str | None = None, split: str | None = None) -> int:
    """Bytes of the listed samples' pixels in their stored dtype (what holding them in memory takes);
    `split` may join several (`train+val`). Samples are summed over shards, not over `counts`, which
    counts a multi-label sample once per class it carries."""
    splits = split_parts(split) if split is not None else None
    total = 0
    for entry in manifest.shards:
        if (modality or entry.modality) != entry.modality or (splits is not None and entry.split not in splits):
            continue
        spec = manifest.modalities[entry.modality]
        height, width = spec.image_size
        total += entry.samples * len(spec.bands) * height * width * np.dtype(spec.dtype).itemsize
    return total


def declared_sizes(path: Path, entry: ShardEntry, handle) -> None:
    """What a shard declares against what it can hold, before anything is allocated from it: every
    dataset's first dimension is the manifest's sample count, and the samples fit the bytes present
    (a compressed sample takes at least a byte: an 8 MB shard cannot hold 10^10 labels)."""
    if entry.samples > max(entry.bytes, path.stat().st_size):
        raise DatasetError(f"{path}: declares {entry.samples:,} samples in {path.stat().st_size:,} bytes; a shard holds "
                           "at least a byte per sample")
    for name in handle:
        shape = handle[name].shape
        if not shape or shape[0] != entry.samples or any(s > 1_000_000 for s in shape[1:]):
            raise DatasetError(f"{path}: dataset '{name}' has shape {shape}, the manifest says {entry.samples:,} "
                               "samples (a crafted shard?)")


def check_against_shards(root: Path, manifest: Manifest) -> None:
    """The manifest's classes, bands and per-class counts against what the shards themselves hold."""
    import numpy as np

    from .shards import open_shard, read_text

    if dataset_version(manifest.shards) != manifest.dataset_version:
        raise DatasetError(f"{root / MANIFEST}: dataset_version does not match the shard content hashes it lists")
    counts: dict[str, dict[str, np.ndarray]] = {}
    classes = list(manifest.classes)
    for entry in manifest.shards:
        path = shard_path(root, entry)
        try:
            with open_shard(path) as handle:
                stored_classes = read_text(handle.attrs["class_names"])
                stored_bands = read_text(handle.attrs["band_names"])
                content = read_text(handle.attrs["content_sha256"])
                images = handle["images"]
                image_shape, image_dtype = images.shape, images.dtype
                declared_sizes(path, entry, handle)  # before any column is read into memory
                labels = handle["labels"][()]
                multi = handle["multilabels"][()] if "multilabels" in handle else None
                ids_shape, ids_dtype = handle["source_ids"].shape, handle["source_ids"].dtype
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable ackd-bench shard ({type(exc).__name__}: {exc})") from None
        spec = manifest.modalities[entry.modality]
        bands = spec.bands
        expected_shape = (entry.samples, len(bands), *spec.image_size)
        problem = None
        if content != entry.content_sha256:
            problem = "content_sha256 differs from the manifest's"
        elif tuple(image_shape) != expected_shape or image_dtype != np.dtype(IMAGE_DTYPES[entry.modality]):
            problem = (f"images are {tuple(image_shape)} {image_dtype}, the manifest says {expected_shape} "
                       f"{np.dtype(IMAGE_DTYPES[entry.modality]).name}")
        elif labels.dtype.kind not in "iu" or (multi is not None and multi.dtype.kind not in "iub"):
            problem = f"labels are {labels.dtype}{'' if multi is None else f' / {multi.dtype}'}, expected integers"
        elif ids_shape != (entry.samples,) or ids_dtype.kind != "S" or ids_dtype.itemsize > MAX_ID_BYTES:
            problem = (f"source_ids are {ids_shape} {ids_dtype}, expected {entry.samples} byte strings of at most "
                       f"{MAX_ID_BYTES} bytes")
        elif labels.shape != (entry.samples,) or (len(labels) and (labels.min() < 0 or labels.max() >= len(classes))):
            problem = f"labels must be {entry.samples} class indices in [0, {len(classes)})"
        elif multi is not None and (multi.shape != (entry.samples, len(classes)) or not np.isin(multi, (0, 1)).all()):
            problem = f"multilabels must be {entry.samples} x {len(classes)} zeros and ones"
        if problem:
            raise DatasetError(f"{path}: {problem} (manifest edited after the build, or a crafted shard?)")
        if list(stored_classes) != classes or list(stored_bands) != list(bands):
            field = "classes" if list(stored_classes) != classes else f"modalities.{entry.modality}.bands"
            raise DatasetError(f"{root / MANIFEST}: {field} do not match {path.name} (manifest edited after the build?)")
        per_class = multi.sum(axis=0) if multi is not None else np.bincount(labels, minlength=len(classes))
        split = counts.setdefault(entry.modality, {}).setdefault(entry.split, np.zeros(len(classes), np.int64))
        split += per_class.astype(np.int64)
    for modality, splits in counts.items():
        for split, values in splits.items():
            listed = [manifest.counts[modality][split][c] for c in classes]
            if listed != values.tolist():
                raise DatasetError(f"{root / MANIFEST}: counts.{modality}.{split} {listed} do not match the shards' "
                                   f"labels {values.tolist()} (manifest edited after the build?)")


def verify_for_training(root: str | Path) -> Manifest:
    """`verify_manifest` with checksums, hashing only shards changed since they were last verified.

    A run must not train on a damaged copy (one flipped byte keeps the size), but hashing every
    shard before each of a sweep's runs would cost minutes. A verified shard gets a stamp in the
    user's own folder (`verification_stamp`), never in the dataset's: a stamp a dataset carries
    could be forged by whoever sent it, together with the shard it vouches for.
    """
    root = Path(root)
    manifest = verify_manifest(root, checksums=False)
    for entry in manifest.shards:
        path = shard_path(root, entry)
        stamp, seen = verification_stamp(path, entry.sha256)
        try:
            if json.loads(stamp.read_text()) == seen:
                continue
        except (OSError, ValueError):
            pass
        check_sha256(path, entry, " (damaged or modified); rebuild with `ackd-bench build --force`")
        try:
            from ..provenance import write_json_atomic

            stamp.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(stamp, seen)
        except OSError:  # a read-only home: verified now, again next time
            pass
    check_against_shards(root, manifest)  # labels and attributes only: cheap next to the pixels
    return manifest


def verification_stamp(path: Path, sha256: str) -> tuple[Path, dict[str, Any]]:
    """Where the stamp of the file at `path` lives, and what it must hold to vouch for `sha256`.

    The stamp is keyed by the file's identity (device and inode) and holds its size, mtime and
    ctime: a user can set a file's mtime back after editing it, but not its ctime, which any write
    or `touch` moves to now. A copied or rebuilt shard is a new inode, hashed once again."""
    from ..home import user_home

    stat = path.stat()
    identity = hashlib.sha256(f"{stat.st_dev}:{stat.st_ino}".encode()).hexdigest()[:32]
    seen = {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "ctime_ns": stat.st_ctime_ns, "sha256": sha256}
    return user_home() / "verified" / f"{identity}.json", seen


def describe(manifest: Manifest) -> str:
    """The manifest as a human-readable table (what `ackd-bench info` prints)."""
    import pandas as pd

    from .splits import SPLITS

    name = manifest.dataset + ("  [SYNTHETIC]" if manifest.synthetic else "")
    lines = [
        f"dataset          {name}",
        f"dataset version  {manifest.dataset_version[:16]}  (recipe {(manifest.recipe_hash or '?')[:12]})",
        f"built by         ackd-bench {manifest.code_version or '?'} at {manifest.created_utc or '?'}",
    ]
    for modality, spec in manifest.modalities.items():
        h, w = spec.image_size
        kind = "multi-label" if spec.multilabel else "single-label"
        lines.append(
            f"{modality.upper():<4} {len(spec.bands):>2} bands  {h}x{w} {spec.dtype}  {kind}  "
            f"bands: {' '.join(spec.bands)}"
        )
        lines += [f"     band set {name} ({len(bands)}): {' '.join(bands)}  (options.ms_bands {name})"
                  for name, bands in (spec.band_sets or {}).items()]
    rows = {}
    for modality in manifest.modalities:
        for split in SPLITS:
            rows[f"{modality}/{split}"] = manifest.counts[modality][split]
    table = pd.DataFrame(rows).reindex(list(manifest.classes)).fillna(0).astype(int)
    table.loc["samples"] = [sum(e.samples for e in manifest.shards if f"{e.modality}/{e.split}" == column)
                            for column in table.columns]
    table.index.name = "class"
    lines += ["", table.to_string(), ""]
    if any(spec.multilabel for spec in manifest.modalities.values()):
        lines += ["multi-label sides count a sample in every class it carries", ""]
    total_bytes = sum(e.bytes for e in manifest.shards)
    lines.append(
        f"shards           {len(manifest.shards)} files, {total_bytes / 1e6:.1f} MB, "
        f"{manifest.compression or '?'}, <= {manifest.shard_max_samples or '?'} samples each"
    )
    mi = manifest.mi
    if mi:
        paired = "n/a" if mi.mean_paired is None else f"{mi.mean_paired:.3f}"
        lines.append(f"within-class MI  unpaired {mi.mean_unpaired:.3f}, permutation {mi.mean_permutation:.3f}, "
                     f"paired {paired} nats ({mi.bins} bins, {mi.pairs_per_class} pairs/class)")
    splits = manifest.splits
    if splits is not None and splits.fractions:
        lines.append(
            "splits           " + " / ".join(f"{k} {v:g}" for k, v in splits.fractions.items())
            + f"  (salt '{splits.salt}')"
            + "".join(f"; {m.upper()}: the source's own split (official, or the generator's)" for m in splits.from_source)
        )
    return "\n".join(lines)
