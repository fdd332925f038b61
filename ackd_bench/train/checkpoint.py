"""Checkpoints: data only, written atomically, loaded with checks that name what does not match.

A checkpoint is something users download and share, so loading one must never run code from it.
Files are written as tensors and plain Python values (numbers, strings, lists, tuples, dicts) and
read with `torch.load(weights_only=True)`, whose unpickler refuses any other object. Checkpoints
written before this rule also hold NumPy arrays (the NumPy RNG state, match tables): NumPy's array
constructor is allowed by name, so they still load, and nothing else is.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import AckdError
from ..models.backbones import HEADS
from ..provenance import atomic_path
from ..untrusted import check_nesting, typed


class CheckpointError(AckdError):
    """A checkpoint is missing, unreadable or made for another model or dataset."""


def as_data(value: Any) -> Any:
    """NumPy arrays and scalars as tensors and Python numbers, recursively: what weights-only loading reads."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: as_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(as_data(v) for v in value)
    return value


MAX_MEMBERS = 100_000  # a member per tensor: a ResNet34 with its optimiser state has about 700


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    save_tensors(path, as_data(payload))


def save_tensors(path: str | Path, payload: Any) -> None:
    """torch.save to a temporary file renamed over `path`; a full or read-only disk is one line (torch
    reports it as a RuntimeError of its zip writer) and leaves nothing behind."""
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except RuntimeError as exc:
        if not any(mark in str(exc) for mark in ("PytorchStreamWriter", "inline_container")):  # its zip writer's
            raise
        raise AckdError(f"{path}: could not be written (a full or read-only disk?): {' '.join(str(exc).split())[:200]}"
                        ) from None


def _numpy_array_globals() -> list:
    """NumPy's array and scalar constructors and dtypes: what older checkpoints of this project hold."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    dtypes = {type(np.dtype(name)) for name in ("bool", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                                                "uint64", "float16", "float32", "float64")}
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtypes]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    _check_archive(path)
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: refused: it holds {_unsafe_objects(path)}, which a checkpoint of weights and "
                              "metadata never needs (loading it could run code)") from None
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not an ackd-bench checkpoint (holds a {type(state).__name__}, not a dict)")
    try:
        check_nesting(state, str(path))
    except AckdError as exc:
        raise CheckpointError(str(exc)) from None
    return state


def _check_archive(path: Path) -> None:
    """Refuse, before torch reads it, a file that is not what torch.save writes: a zip archive of stored
    (uncompressed) members, which therefore hold no more bytes than the file. A compressed member
    would be inflated before any check (10 MB on disk, 3 GB in memory)."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a checkpoint written by torch.save (not a zip archive: {exc})") from None
    if len(members) > MAX_MEMBERS:
        raise CheckpointError(f"{path}: {len(members):,} members; a checkpoint has at most {MAX_MEMBERS:,}")
    packed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise CheckpointError(f"{path}: member {packed[0][:100]!r} is compressed; torch.save stores members "
                              "uncompressed (refused: its size is only known once inflated)")
    declared = sum(m.file_size for m in members)
    if declared > size:
        raise CheckpointError(f"{path}: its members declare {declared:,} bytes, more than the file's {size:,}")


def _unsafe_objects(path: Path) -> str:
    """The globals a refused file asks for, as named in the file (read without unpickling it)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - a file damaged beyond listing: say so instead
        return "objects other than tensors and plain values"
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in _numpy_array_globals()}
    names = [n for n in names if n not in allowed]
    return ", ".join(names) if names else "objects other than tensors and plain values"


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """This process's generators: Python's, NumPy's, torch's CPU one and, on a GPU, that of its own
    device only (not every visible GPU's: a run resumed on another layout has other GPUs)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position,
                                                     has_gauss, cached),
             "torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def cuda_state_for(saved: Any, device: torch.device | None) -> torch.Tensor | None:
    """The CUDA generator state to restore on `device`, or None: a checkpoint holds its own device's;
    one written before that holds every visible GPU's, of which this device's index is taken where it
    exists (resuming on fewer GPUs than were visible raised an IndexError)."""
    if saved is None or device is None or device.type != "cuda":
        return None
    if isinstance(saved, (list, tuple)):
        index = device.index or 0
        return saved[index] if index < len(saved) else None
    return saved


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = cuda_state_for(state.get("cuda"), device)
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda, device)


def rank_rng_state(payload: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """The generator state a rank resumes with: its own (`rng_ranks`, one per rank of a DDP run), or
    the main rank's (`rng`) when the checkpoint holds no per-rank states or was written by another
    number of ranks."""
    ranks = payload.get("rng_ranks")
    if isinstance(ranks, (list, tuple)) and len(ranks) == world_size:
        return ranks[rank]
    return payload["rng"]


def load_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor], path: str | Path, what: str) -> None:
    """Load a checkpoint's weights, or fail with one line saying how they do not fit `what`."""
    expected = module.state_dict()
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: holds no weights (its 'module' entry is a {type(weights).__name__})")
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    reshaped = [k for k in expected if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or reshaped:
        example = (f"{reshaped[0]} is {tuple(weights[reshaped[0]].shape)}, expected {tuple(expected[reshaped[0]].shape)}"
                   if reshaped else f"'{(missing or unexpected)[0]}' {'missing' if missing else 'unexpected'}")
        raise CheckpointError(f"{path}: its weights do not fit {what}: {len(missing)} missing, {len(unexpected)} "
                              f"unexpected, {len(reshaped)} of another shape ({example}); a checkpoint of another "
                              "architecture or band count?")
    module.load_state_dict(weights)


def untouched_rng():
    """Context for building a model that a checkpoint's weights will overwrite: its random init must
    not move the global RNG, or a run's draws would depend on whether, say, a teacher cache existed."""
    return torch.random.fork_rng(devices=[])


# what a model's metadata may claim: checked before anything is allocated from it
MODEL_LIMITS = {"in_channels": 64, "num_classes": 10_000, "dim": 8192}
MATCHER_PARAMS = {"dim": (int,), "dropout": (int, float), "temperature": (int, float), "soft_targets": (bool,),
                  "normalise": (bool,), "learned_targets": (bool,), "pseudo_rgb": (str,), "heads": (str,)}


def require_fields(state: dict[str, Any], fields: tuple[str, ...], path: str | Path) -> None:
    missing = [f for f in fields if f not in state]
    if missing:
        raise CheckpointError(f"{path}: not an ackd-bench model checkpoint (no {', '.join(missing)})")
    module = state.get("module", {})
    if not isinstance(module, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in module.items()):
        raise CheckpointError(f"{path}: its 'module' entry must map parameter names to tensors "
                              f"(holds a {type(module).__name__})")
    params = state.get("matcher_params")
    if params is not None:
        if not isinstance(params, dict) or set(params) - set(MATCHER_PARAMS) or not all(
                typed(v, MATCHER_PARAMS[k]) for k, v in params.items()):
            raise CheckpointError(f"{path}: matcher_params must map some of {', '.join(MATCHER_PARAMS)} to values of "
                                  "their types")
    for key, top in MODEL_LIMITS.items():
        value = (params or {}).get(key) if key == "dim" else state.get(key)
        if value is not None and (not typed(value, (int,)) or not 1 <= value <= top):
            raise CheckpointError(f"{path}: {key}={value!r} is not a plausible model size (expected an integer from 1 "
                                  f"to {top})")
    if not isinstance(state.get("arch", ""), str) or not isinstance(state.get("width", 1.0), (int, float)) \
            or state.get("heads", "projected") not in HEADS:
        raise CheckpointError(f"{path}: arch must be a name, width a number and heads one of {', '.join(HEADS)}")


def check_compatible(meta: dict[str, Any], expected: dict[str, Any], path: str | Path) -> None:
    """Fail with one line naming the first field where a checkpoint and its use disagree."""
    for key, want in expected.items():
        have = meta.get(key)
        if have != want:
            raise CheckpointError(f"{path}: checkpoint has {key}={have!r}, expected {want!r}")
