"""One side (MS or RGB) of a recipe: one or more public sources, capped and balanced per class.

A side names either one `source` with its `class_map`, or several under `sources:` (M2S-GL's RGB
side draws on RESISC45 and AID), each with its own map. Source ids start with the source's name,
so a sample finds its way back to the module that reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DatasetError
from ..recipe import Recipe
from ..selection import balance_multilabel, cap_per_class
from ..shards import SampleRef


class Side:
    def __init__(self, modality: str, parts: dict[str, Any], bands: list[str], cap: int | None, salt: str,
                 num_classes: int, paired: Any = None, paired_absent: dict[str, str] | None = None):
        self.modality, self.parts, self.bands = modality, parts, bands
        self.cap, self.salt, self.num_classes = cap, salt, num_classes
        self.paired = paired  # the source of each MS sample's paired RGB image, if the recipe names one
        self.paired_absent = paired_absent  # {"source", "reason"} when the recipe names one that is missing

    def refs(self) -> list[SampleRef]:
        candidates = [ref for part in self.parts.values() for ref in part.refs()]
        if any(ref.multilabel is not None for ref in candidates):
            chosen = balance_multilabel(candidates, self.num_classes, self.cap, self.salt)
        else:
            chosen = cap_per_class(candidates, self.cap, self.salt)
        for name, part in self.parts.items():  # a source read from a stream fetches only what was chosen
            part.prepare([ref for ref in chosen if ref.source_id.startswith(f"{name}/")])
        return chosen

    def load(self, ref: SampleRef) -> np.ndarray:
        return self.parts[ref.source_id.split("/", 1)[0]].load(ref)

    def load_with_pair(self, ref: SampleRef) -> tuple[np.ndarray, np.ndarray]:
        return self.load(ref), self.paired.pair(ref)

    def provenance(self) -> dict[str, Any]:
        records = [part.provenance() for part in self.parts.values()]
        if len(records) == 1:
            return records[0]
        return {"name": "+".join(self.parts), "parts": records}


def open_side(recipe: Recipe, modality: str, *, root: Path, source_dir: Path | None, download: bool,
              require_paired: bool = False) -> Side:
    """A recipe side. Its paired control (only the analyses' symmetric control, never training data)
    is optional unless `require_paired`: when its files are missing or fail to download, the side
    is built without it and says why in `paired_absent`."""
    from . import PAIRED_SOURCES, SOURCES

    side = recipe.modalities[modality]
    where = f"recipe '{recipe.name}': modalities.{modality}"
    entries = side.sources or {None: {}}  # no source named: the error below lists the choices
    parts = {}
    for name, settings in entries.items():
        if name not in SOURCES:
            raise DatasetError(f"{where}: source must be one of {', '.join(SOURCES)}, got {name!r}")
        parts[name] = SOURCES[name](settings, list(recipe.classes), recipe.image_size, root=root,
                                    source_dir=source_dir, download=download)
    paired, paired_absent = None, None
    if side.paired_rgb:
        name = side.paired_rgb
        if name not in PAIRED_SOURCES:
            raise DatasetError(f"{where}.paired_rgb.source must be one of {', '.join(PAIRED_SOURCES)}, got {name!r}")
        try:
            paired = PAIRED_SOURCES[name](recipe.image_size, root=root, source_dir=source_dir,
                                          download=download)
        except DatasetError as exc:
            if require_paired:
                raise
            paired_absent = {"source": name, "reason": str(exc)}
    return Side(modality, parts, list(side.bands), side.cap_per_class, recipe.splits.salt, len(recipe.classes),
                paired, paired_absent)
