"""A built benchmark in torchgeo: each side as a `NonGeoDataset`, and a `NonGeoDataModule`, so that
torchgeo's trainers (and TerraTorch on top of them) fit on a built directory.

    from ackd_bench.data.nongeo import BenchmarkDataModule
    from torchgeo.trainers import ClassificationTask
    datamodule = BenchmarkDataModule("data/s2s-eu", side="rgb", batch_size=64)
    task = ClassificationTask(model="resnet18", weights=None, in_channels=3, num_classes=10)
    lightning.Trainer(max_epochs=10).fit(task, datamodule=datamodule)

The sides:
- `ms`: the teacher's images;
- `rgb`: the student's images;
- `paired`: the paired-control RGB images of the MS scenes, labelled as the MS side.

A dataset returns stored pixel values as float32. The data module normalises them once, on the
device, with the train split's per-band mean and std from the manifest. torchgeo's default is to
divide by 255, and ackd-bench's own `ShardDataset` normalises on read; either would normalise the
samples a second time here.

`torchgeo` is imported only by this module, so training with ackd-bench never needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torchgeo.datamodules import NonGeoDataModule
from torchgeo.datasets import NonGeoDataset

from ..errors import DatasetError
from .dataset import ShardDataset
from .manifest import Manifest, verify_for_training
from .mi import paired_view

SIDES = ("ms", "rgb", "paired")


def side_statistics(manifest: Manifest, side: str) -> tuple[list[float], list[float]]:
    """Per-band train mean and std of a side (the paired RGB images use the RGB side's)."""
    spec = manifest.modalities["ms" if side == "ms" else "rgb"]
    return list(spec.mean), list(spec.std)


class BenchmarkDataset(NonGeoDataset):
    """One side and split of a built ackd-bench directory: samples `image` (C, H, W) float32 of the
    stored values and `label` (int64, or a float32 multi-hot vector for the multi-label MS side)."""

    def __init__(self, root: str | Path = "data", split: str = "train", side: str = "rgb",
                 transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None):
        if side not in SIDES:
            raise DatasetError(f"side '{side}': expected one of {', '.join(SIDES)}")
        self.root, self.split, self.side, self.transforms = Path(root), split, side, transforms
        self.data = ShardDataset(root, "rgb" if side == "rgb" else "ms", split, normalize=False)
        self.classes = self.data.classes
        self.multilabel = self.data.multilabel and side != "paired"
        self.bands = ["R", "G", "B"] if side == "paired" else self.data.bands
        rgb_bands = self.data.manifest.modalities["ms"].rgb_bands if side == "ms" else None
        self.rgb_indices = [self.bands.index(b) for b in rgb_bands] if rgb_bands else [0, 1, 2]
        self.paired = paired_view(self.data) if side == "paired" else None
        if side == "paired" and self.paired is None:
            raise DatasetError(f"{root}: this build has no paired RGB control (manifest paired_rgb: absent)")

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        raw = self.paired(index) if self.paired is not None else self.data.reader.read(index)
        sample = {"image": torch.from_numpy(np.asarray(raw, dtype=np.float32))}
        if self.multilabel:
            sample["label"] = torch.from_numpy(self.data.reader.read(index, "multilabels").astype(np.float32))
        else:
            sample["label"] = torch.tensor(int(self.data.labels[index]))
        return self.transforms(sample) if self.transforms is not None else sample

    def plot(self, sample: dict[str, torch.Tensor], show_titles: bool = True, suptitle: str | None = None):
        """The sample's R, G, B bands, each stretched between its 2nd and 98th percentile, with its
        class (and the prediction, where the sample has one)."""
        import matplotlib.pyplot as plt

        image = sample["image"].numpy()[self.rgb_indices].astype(np.float64)
        low, high = np.percentile(image, 2, axis=(1, 2), keepdims=True), np.percentile(image, 98, axis=(1, 2), keepdims=True)
        image = np.clip((image - low) / np.maximum(high - low, 1e-6), 0, 1).transpose(1, 2, 0)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(image)
        ax.axis("off")
        if show_titles:
            title = f"Label: {self._names(sample['label'])}"
            if "prediction" in sample:
                title += f"\nPrediction: {self._names(sample['prediction'])}"
            ax.set_title(title)
        if suptitle is not None:
            fig.suptitle(suptitle)
        return fig

    def _names(self, label: torch.Tensor) -> str:
        if label.ndim == 0:
            return self.classes[int(label)]
        return ", ".join(self.classes[i] for i in torch.nonzero(label > 0.5).flatten().tolist())


class BenchmarkDataModule(NonGeoDataModule):
    """A built benchmark's side for torchgeo's trainers: train/val/test from the build's splits,
    normalised once with its manifest's statistics."""

    def __init__(self, root: str | Path = "data", side: str = "rgb", batch_size: int = 64, num_workers: int = 0,
                 **kwargs: Any):
        manifest = verify_for_training(root)
        mean, std = side_statistics(manifest, side)
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)
        super().__init__(BenchmarkDataset, batch_size, num_workers, root=root, side=side, **kwargs)
