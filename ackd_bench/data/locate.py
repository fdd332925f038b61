"""Which built benchmark a command runs on: `--dataset NAME|PATH`, a DATASET_DIR, or none at all.

With none, the card's `ackd-bench eval --method sembridge` still runs: on the only benchmark built
under the data root (`data/`, or `$ACKD_BENCH_DATA`), or on `toy`, built there on the spot when
nothing is. Several built benchmarks are never guessed between.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import AckdError
from ..untrusted import plain_name

DATA_ROOT_VARIABLE = "ACKD_BENCH_DATA"
EMBEDDED = "toy"  # generated, not downloaded: the one benchmark that can be built on the spot
DEFAULT_PROFILES = {EMBEDDED: "demo"}  # the paper's 200-epoch schedule is hours on a laptop, minutes of toy's worth
PAPER_PROFILE = "paper"


def data_root() -> Path:
    return Path(os.environ.get(DATA_ROOT_VARIABLE) or "data")


def built_datasets(root: Path) -> list[Path]:
    """Folders directly under `root` holding a manifest, sorted by name."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())


@dataclass(frozen=True)
class ChosenDataset:
    path: Path
    name: str
    how: str  # why this one, for the line the command prints

    def default_profile(self) -> str:
        return DEFAULT_PROFILES.get(self.name, PAPER_PROFILE)


def choose_dataset(given: str | Path | None, root: Path | None = None, progress: bool = True) -> ChosenDataset:
    """The dataset a run uses: `given` as a folder, else as a name under `root`; with nothing given,
    the only one built under `root`, else toy built there now."""
    root = data_root() if root is None else Path(root)
    if given is not None:
        path = Path(given)
        if (path / "manifest.json").is_file():
            return _chosen(path, "given")
        if path.exists():
            raise AckdError(f"{path}: not a built dataset (no manifest.json); build one with `ackd-bench build NAME`")
        return _by_name(str(given), root, progress)
    built = built_datasets(root)
    if len(built) == 1:
        return _chosen(built[0], f"the only benchmark built under {root}/")
    if len(built) > 1:
        raise AckdError(f"{len(built)} benchmarks are built under {root}/ ({', '.join(p.name for p in built)}): "
                        "choose one with --dataset NAME")
    return _build_embedded(root, progress)


def _by_name(name: str, root: Path, progress: bool) -> ChosenDataset:
    from .recipe import dataset_names

    names = dataset_names()
    if name not in names:
        raise AckdError(f"--dataset {name}: neither a built dataset's folder nor a benchmark name "
                        f"({', '.join(names)})")
    path = root / plain_name(name, "--dataset")
    if (path / "manifest.json").is_file():
        return _chosen(path, f"built under {root}/")
    if name == EMBEDDED:
        return _build_embedded(root, progress)
    raise AckdError(f"{name} is not built under {root}/: run `ackd-bench build {name}` first, or give its folder "
                    f"with --dataset PATH (or set {DATA_ROOT_VARIABLE})")


def built_for_plan(path: str | Path, plan: str | Path, progress: bool = True) -> Path:
    """A sweep plan's dataset folder where the plan is replayed: as it is if built, built now if it
    is toy under the data root (where `--dataset toy` builds it; a plan never chooses where
    anything is written), else a one-line error saying how."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        return path
    embedded = data_root() / EMBEDDED
    if not path.exists() and path.absolute() == embedded.absolute():
        return _build_embedded(data_root(), progress).path
    raise AckdError(f"{plan}: the plan's dataset {path} is not built here; build it there first "
                    f"(`ackd-bench build {path.name} --root {path.parent}`), or replay where it is")


def _build_embedded(root: Path, progress: bool) -> ChosenDataset:
    from .build import build_dataset

    result = build_dataset(EMBEDDED, root / EMBEDDED, progress=progress)
    return ChosenDataset(root / EMBEDDED, EMBEDDED, f"{result.status} under {root}/")


def _chosen(path: Path, how: str) -> ChosenDataset:
    from .manifest import read_manifest

    return ChosenDataset(path, read_manifest(path).dataset, how)
