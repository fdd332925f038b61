"""Recipes: a benchmark dataset described as data (sources, bands, classes, size, splits, caps).

Any change to a recipe's content changes its hash and therefore the dataset version. Comments in
the YAML (the reasons for each choice) do not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import AckdError, RecipeError
from ..provenance import config_hash
from ..resources import resource_dirs
from ..untrusted import load_yaml, plain_name
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


def load_recipe(name: str) -> dict[str, Any]:
    path = recipe_path(name)
    try:
        recipe = load_yaml(path.read_text(), str(path))
    except AckdError as exc:
        raise RecipeError(str(exc)) from None
    validate_recipe(recipe, str(path))
    return recipe


def validate_recipe(recipe: Any, where: str) -> None:
    if not isinstance(recipe, dict):
        raise RecipeError(f"{where}: a recipe must be a mapping")
    missing = [key for key in REQUIRED_KEYS if key not in recipe]
    if missing:
        raise RecipeError(f"{where}: missing field(s) {', '.join(missing)}")
    try:
        plain_name(recipe["name"], "field 'name'")  # it becomes the dataset's name, and a folder of runs
    except AckdError as exc:
        raise RecipeError(f"{where}: {exc}") from None
    if not recipe["classes"] or len(set(recipe["classes"])) != len(recipe["classes"]):
        raise RecipeError(f"{where}: field 'classes' must be a non-empty list of distinct names")
    if set(recipe["modalities"]) != {"ms", "rgb"}:
        raise RecipeError(f"{where}: field 'modalities' must define exactly 'ms' and 'rgb'")
    for modality, spec in recipe["modalities"].items():
        if not spec.get("bands"):
            raise RecipeError(f"{where}: modalities.{modality}.bands must list the bands kept")
    validate_fractions(recipe["splits"].get("fractions", {}), f"{where}: splits.fractions")
    if not recipe["splits"].get("salt"):
        raise RecipeError(f"{where}: splits.salt must be a non-empty string")
    if recipe["shards"].get("compression") not in COMPRESSIONS:
        raise RecipeError(f"{where}: shards.compression must be one of {', '.join(COMPRESSIONS)}")
    if int(recipe["shards"].get("max_samples", 0)) < 1:
        raise RecipeError(f"{where}: shards.max_samples must be a positive integer")


def side_sources(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A side's sources, each with its own settings over the side's: one `source` (with the side's
    `class_map`), or several under `sources:`; empty for a generated side (toy)."""
    if "sources" in spec:
        return {name: {**spec, **(entry or {})} for name, entry in spec["sources"].items()}
    return {spec["source"]: spec} if "source" in spec else {}


def recipe_hash(recipe: dict[str, Any]) -> str:
    return config_hash(recipe)
