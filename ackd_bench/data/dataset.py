"""`ShardDataset`: a torch Dataset over one modality and split (or splits joined by `+`, such as
`train+val`) of a built dataset directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import AckdError, DatasetError
from .manifest import Manifest, read_manifest, shard_path
from .shards import MODALITIES, ShardReader
from .splits import split_parts


class ShardDataset(Dataset):
    """Samples as dicts: `image` (C, H, W) float32 normalised with the train mean/std, `label`
    (int), `index`, and `multilabel` (L,) float32 where the modality is multi-label. A combined
    split (`train+val`) holds its splits' samples in the order named.

    `bands` selects stored bands by name, in feeding order (a run's band set, which
    `train.runs.load_dataset` resolves from `options.ms_bands`): every read of images, one by one,
    batched or resident, returns those channels, normalised with their own statistics. Default:
    every stored band."""

    def __init__(
        self,
        root: str | Path,
        modality: str,
        split: str,
        *,
        normalize: bool = True,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        manifest: Manifest | None = None,
        bands: Sequence[str] | None = None,
    ):
        if modality not in MODALITIES:
            raise DatasetError(f"unknown modality '{modality}': expected one of {', '.join(MODALITIES)}")
        parts = split_parts(split)
        self.root = Path(root)
        self.manifest = manifest if manifest is not None else read_manifest(self.root)
        self.modality, self.split = modality, split
        entries = [e for part in parts for e in self.manifest.entries(modality, part)]
        stored = self.manifest.modalities[modality]
        self.stored_bands: list[str] = list(stored.bands)
        try:
            spec = stored if bands is None else stored.selected(bands)
        except AckdError as exc:
            raise DatasetError(f"{self.root}: {exc}") from None
        self.bands: list[str] = list(spec.bands)
        channels = [self.stored_bands.index(b) for b in self.bands]
        self.reader = ShardReader([shard_path(self.root, e) for e in entries], [e.samples for e in entries],
                                  None if channels == list(range(len(self.stored_bands))) else channels)
        self.classes: list[str] = list(self.manifest.classes)
        self.multilabel = spec.multilabel
        self.normalize = normalize
        self.transform = transform
        self.mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)
        columns = list(self.reader.read_column("labels"))  # small: kept in memory for samplers
        self.labels = np.concatenate(columns).astype(np.int64) if columns else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.reader)

    def source_ids(self) -> list[str]:
        return [str(s) for column in self.reader.read_column("source_ids") for s in column]

    def normalise(self, raw: np.ndarray) -> torch.Tensor:
        """uint images (..., C, H, W) -> float32 tensor, standardised per band with train statistics."""
        image = torch.from_numpy(raw.astype(np.float32))
        if self.normalize:
            image.sub_(self.mean).mul_(self.inv_std)
        return image

    def _sample(self, index: int, image: torch.Tensor) -> dict[str, Any]:
        sample = {"image": image, "label": int(self.labels[index]), "index": index}
        if self.multilabel:
            sample["multilabel"] = torch.from_numpy(self.reader.read(index, "multilabels").astype(np.float32))
        return self.transform(sample) if self.transform else sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._sample(index, self.normalise(self.reader.read(index)))

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """Batched fetch used by DataLoader: one vectorised conversion for the whole batch."""
        raw = self.reader.read_images(indices)
        images = self.normalise(raw).unbind(0)
        return [self._sample(int(i), image) for i, image in zip(indices, images)]


def class_galleries(ms: ShardDataset) -> list[np.ndarray]:
    """MS sample indices per class; a multi-label patch belongs to every class among its labels."""
    num_classes = len(ms.classes)
    if ms.multilabel:
        multi = np.concatenate(list(ms.reader.read_column("multilabels"))).astype(bool)
        galleries = [np.flatnonzero(multi[:, c]) for c in range(num_classes)]
    else:
        galleries = [np.flatnonzero(ms.labels == c) for c in range(num_classes)]
    return galleries
