"""Training profiles (`recipes/profile-NAME.yaml`): optimiser, schedule and loss weights as data."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from ..data.recipe import recipe_dirs
from ..errors import AckdError

SECTIONS = ("teacher", "student", "matcher")


def profile_names() -> list[str]:
    return sorted({p.stem[len("profile-"):] for d in recipe_dirs() for p in d.glob("profile-*.yaml")})


def load_profile(name: str, overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A profile by name, with per-section overrides (e.g. {"student": {"epochs": 5}})."""
    for directory in recipe_dirs():
        path = directory / f"profile-{name}.yaml"
        if path.is_file():
            profile = yaml.safe_load(path.read_text())
            break
    else:
        raise AckdError(f"unknown training profile '{name}': expected one of {', '.join(profile_names())}")
    missing = [s for s in SECTIONS if s not in profile]
    if missing:
        raise AckdError(f"{path}: missing section(s) {', '.join(missing)}")
    profile = copy.deepcopy(profile)
    for section, values in (overrides or {}).items():
        profile[section].update({k: v for k, v in values.items() if v is not None})
    return profile
