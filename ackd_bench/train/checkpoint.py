"""Checkpoints: written atomically, loaded with checks that name what does not match."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import AckdError
from ..provenance import atomic_path


class CheckpointError(AckdError):
    """A checkpoint is missing, unreadable or made for another model or dataset."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def untouched_rng():
    """Context for building a model that a checkpoint's weights will overwrite: its random init must
    not move the global RNG, or a run's draws would depend on whether, say, a teacher cache existed."""
    return torch.random.fork_rng(devices=[])


def check_compatible(meta: dict[str, Any], expected: dict[str, Any], path: str | Path) -> None:
    """Fail with one line naming the first field where a checkpoint and its use disagree."""
    for key, want in expected.items():
        have = meta.get(key)
        if have != want:
            raise CheckpointError(f"{path}: checkpoint has {key}={have!r}, expected {want!r}")
