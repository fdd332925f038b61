"""Recipes: a benchmark dataset described as data (sources, bands, classes, size, splits, caps).

Any change to a recipe's content changes its hash and therefore the dataset version. Comments in
the YAML (the reasons for each choice) do not.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AckdError, RecipeError
from ..provenance import config_hash
from ..resources import resource_dirs
from ..untrusted import load_yaml, plain_name, typed
from .bands import check_band_sets
from .splits import validate_fractions

COMPRESSIONS = ("lzf", "gzip", "none")
REQUIRED_KEYS = ("name", "version", "classes", "image_size", "modalities", "splits", "shards")


def dataset_names() -> list[str]:
    """Dataset recipes available ($ACKD_BENCH_RECIPES first, then the packaged ones)."""
    return sorted({path.stem for directory in resource_dirs("recipes") for path in directory.glob("*.yaml")})


def recipe_path(name: str) -> Path:
    try:
        plain_name(name, "dataset")  # a built-in name (or one in $ACKD_BENCH_RECIPES), never a path
    except AckdError as exc:
        raise RecipeError(f"{exc}; recipes are found by name among: {', '.join(dataset_names())}") from None
    for directory in resource_dirs("recipes"):
        candidate = directory / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    known = ", ".join(dataset_names()) or "none found"
    raise RecipeError(f"unknown dataset '{name}': expected one of {known}")


def load_recipe(name: str) -> Recipe:
    path = recipe_path(name)
    try:
        raw = load_yaml(path.read_text(), str(path))
    except AckdError as exc:
        raise RecipeError(str(exc)) from None
    return Recipe.from_dict(raw, str(path))


def side_sources(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A side's sources, each with its own settings over the side's: one `source` (with the side's
    `class_map`), or several under `sources:`; empty for a generated side (toy)."""
    if "sources" in spec:
        return {name: {**spec, **(entry or {})} for name, entry in spec["sources"].items()}
    return {spec["source"]: spec} if "source" in spec else {}


@dataclass(frozen=True)
class SideRecipe:
    """One side (ms or rgb) of a recipe: the bands it keeps, how it is labelled and capped, and the
    public source(s) it is drawn from (none for a generated side)."""

    bands: tuple[str, ...]
    rgb_bands: tuple[str, ...] | None = None  # the MS bands that make its pseudo-RGB
    # named selections of `bands` (data/bands.py): which of them a run feeds, by options.ms_bands
    band_sets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    multilabel: bool = False
    official_split: bool = False  # keep the source's own split instead of the recipe's fractions
    cap_per_class: int | None = None  # at most this many samples drawn per class
    min_label_pixels: int | None = None  # a reference-map class labels a patch from this many pixels up
    paired_rgb: str | None = None  # the source of each MS sample's paired RGB image (the analyses' control)
    # source name -> its settings (the side's, under the source's own entry): bands, class_map and the
    # options only that source knows (min_label_pixels, official_split). They stay mappings because
    # each source's reader parses and checks them against its own classes and bands.
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def class_maps(self) -> dict[str, dict[str, list[str]]]:
        """Source name -> target class <- that source's classes."""
        return {name: settings.get("class_map", {}) for name, settings in self.sources.items()}

    @classmethod
    def from_dict(cls, spec: dict[str, Any], modality: str, where: str) -> SideRecipe:
        paired = spec.get("paired_rgb")
        # {source: NAME}; a bare name or a mapping without a source would otherwise fail only mid-build
        if paired and not (isinstance(paired, dict) and isinstance(paired.get("source"), str)):
            raise RecipeError(f"{where}: modalities.{modality}.paired_rgb must name its source: {{source: NAME}}")
        limits = {key: None if spec.get(key) is None else int(spec[key])
                  for key in ("cap_per_class", "min_label_pixels")}
        band_sets = {}
        if spec.get("band_sets") is not None:
            if modality != "ms":
                raise RecipeError(f"{where}: modalities.{modality}.band_sets: only the MS side selects bands")
            try:
                band_sets = check_band_sets(spec["band_sets"], list(spec["bands"]), f"modalities.{modality}.band_sets")
            except AckdError as exc:
                raise RecipeError(f"{where}: {exc}") from None
        return cls(bands=tuple(spec["bands"]), rgb_bands=tuple(spec["rgb_bands"]) if spec.get("rgb_bands") else None,
                   band_sets=band_sets, multilabel=bool(spec.get("multilabel", False)),
                   official_split=bool(spec.get("official_split", False)),
                   paired_rgb=paired["source"] if paired else None, sources=side_sources(spec), **limits)


@dataclass(frozen=True)
class RecipeSplits:
    """How samples not split by their source are split."""

    fractions: dict[str, float]  # split -> share, by sha256(salt, source id)
    salt: str


@dataclass(frozen=True)
class ShardLimits:
    """How the build writes its HDF5 shards."""

    max_samples: int
    compression: str  # one of COMPRESSIONS


@dataclass(frozen=True)
class Recipe:
    """A recipe file, checked (it is untrusted input: $ACKD_BENCH_RECIPES may hold anyone's) and typed.
    `raw` keeps the mapping exactly as the file held it: the hash is taken over it, and the manifest
    stores it. A variant (a smaller toy for tests) is `Recipe.from_dict(an edited copy of raw)`."""

    name: str
    version: Any  # as the file writes it; only shown
    classes: tuple[str, ...]
    image_size: int
    modalities: dict[str, SideRecipe]
    splits: RecipeSplits
    shards: ShardLimits
    raw: dict[str, Any]
    source: str | None = None  # the builder: "archives" (public sources) or "toy" (generated)
    description: str | None = None
    synthetic: bool = False
    # the toy generator's parameters (seed, per-side sample counts and sub-type rates, the RGB shift):
    # a mapping that data/toy.py owns and reads, as they mean nothing to any other module
    generator: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> Recipe:
        if not isinstance(raw, dict):
            raise RecipeError(f"{where}: a recipe must be a mapping")
        missing = [key for key in REQUIRED_KEYS if key not in raw]
        if missing:
            raise RecipeError(f"{where}: missing field(s) {', '.join(missing)}")
        try:
            plain_name(raw["name"], "field 'name'")  # it becomes the dataset's name, and a folder of runs
        except AckdError as exc:
            raise RecipeError(f"{where}: {exc}") from None
        _check_shape(raw, where)
        if len(set(raw["classes"])) != len(raw["classes"]):
            raise RecipeError(f"{where}: field 'classes' must be a non-empty list of distinct names")
        if set(raw["modalities"]) != {"ms", "rgb"}:
            raise RecipeError(f"{where}: field 'modalities' must define exactly 'ms' and 'rgb'")
        validate_fractions(raw["splits"].get("fractions", {}), f"{where}: splits.fractions")
        if not raw["splits"].get("salt"):
            raise RecipeError(f"{where}: splits.salt must be a non-empty string")
        if raw["shards"].get("compression") not in COMPRESSIONS:
            raise RecipeError(f"{where}: shards.compression must be one of {', '.join(COMPRESSIONS)}")
        raw = copy.deepcopy(raw)  # the hashed content: no later edit of the caller's mapping reaches it
        return cls(
            name=raw["name"], version=raw["version"], classes=tuple(raw["classes"]), image_size=int(raw["image_size"]),
            modalities={m: SideRecipe.from_dict(spec, m, where) for m, spec in raw["modalities"].items()},
            splits=RecipeSplits(dict(raw["splits"]["fractions"]), raw["splits"]["salt"]),
            shards=ShardLimits(int(raw["shards"]["max_samples"]), raw["shards"]["compression"]),
            raw=raw, source=raw.get("source"), description=raw.get("description"),
            synthetic=bool(raw.get("synthetic", False)), generator=raw.get("generator") or {},
        )


# what a recipe's fields may hold: the bound is far above any real benchmark's (64 to 600 px, 19
# classes, 13 bands, shards of 1,000) and far below what would make a build allocate gigabytes
IMAGE_SIDE = (8, 1024)
SIDE_LIMITS = {"cap_per_class": (1, 10_000_000), "min_label_pixels": (0, 10**8)}


def _check_shape(raw: dict[str, Any], where: str) -> None:
    """The types and ranges of a recipe's fields, before any is used: one line naming the first wrong."""
    def fail(field_name: str, expected: str, value: Any) -> None:
        raise RecipeError(f"{where}: {field_name} is {repr(value)[:80]}: expected {expected}")

    classes = raw["classes"]
    if not isinstance(classes, list) or not 0 < len(classes) <= 1000 or not all(
            isinstance(c, str) and 0 < len(c) <= 64 for c in classes):
        fail("classes", "a list of 1 to 1000 class names (text of at most 64 characters)", classes)
    size = raw["image_size"]
    if not typed(size, (int,)) or not IMAGE_SIDE[0] <= size <= IMAGE_SIDE[1]:
        fail("image_size", f"a whole number of pixels from {IMAGE_SIDE[0]} to {IMAGE_SIDE[1]}", size)
    for key in ("modalities", "splits", "shards"):
        if not isinstance(raw[key], dict):
            fail(key, "a mapping", raw[key])
    for modality, spec in raw["modalities"].items():
        if not isinstance(spec, dict):
            fail(f"modalities.{modality}", "a mapping", spec)
        bands = spec.get("bands")
        if not isinstance(bands, list) or not 0 < len(bands) <= 64 or not all(
                isinstance(b, str) and 0 < len(b) <= 16 for b in bands):
            fail(f"modalities.{modality}.bands", "a list of 1 to 64 band names", bands)
        for key, (low, high) in SIDE_LIMITS.items():
            if spec.get(key) is not None and (not typed(spec[key], (int,)) or not low <= spec[key] <= high):
                fail(f"modalities.{modality}.{key}", f"a whole number from {low} to {high:,}", spec[key])
    max_samples = raw["shards"].get("max_samples")
    if not typed(max_samples, (int,)) or not 1 <= max_samples <= 1_000_000:
        fail("shards.max_samples", "a whole number from 1 to 1,000,000", max_samples)
    if not isinstance(raw.get("generator", {}) or {}, dict):
        fail("generator", "a mapping", raw["generator"])


def recipe_hash(recipe: Recipe) -> str:
    return config_hash(recipe.raw)
