"""Plain supervised runs: the MS teacher and the RGB student without distillation (`--method none`).

Cross-entropy for single-label data, BCE-with-logits for the multi-label MS side of M2S-GL.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import ShardDataset
from ..models import Backbone
from .engine import OptimConfig, Runtime, Task
from .feed import TrainFeed, open_splits
from .runs import evaluate


class ClassifierModule(nn.Module):
    def __init__(self, backbone: Backbone, multilabel: bool):
        super().__init__()
        self.backbone, self.multilabel = backbone, multilabel

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.backbone(images)["logits"].float()
        if self.multilabel:
            loss = F.binary_cross_entropy_with_logits(logits, targets)
        else:
            loss = F.cross_entropy(logits, targets)
        return {"loss": loss, "task": loss.detach()}


class ClassifierTask(Task):
    def __init__(self, backbone: Backbone, train: ShardDataset, val: ShardDataset, cfg: OptimConfig,
                 augment: Sequence[str], seed: int, rt: Runtime, multilabel_f1: str = "samples",
                 multilabel_selection: str = "f1"):
        self.module = ClassifierModule(backbone, train.multilabel)
        self.cfg, self.rt, self.multilabel, self.multilabel_f1 = cfg, rt, train.multilabel, multilabel_f1
        self.multilabel_selection = multilabel_selection
        self.train_split, self.val_split = open_splits([train, val], rt)
        self.feed = TrainFeed(self.train_split, cfg.batch_size, seed, augment, rt, stream=2)

    def train_batches(self, epoch: int):
        return self.feed.epoch(epoch)

    def prepare(self, batch: dict[str, Any], epoch: int, step: int) -> dict[str, Any]:
        return {"images": batch["image"], "targets": batch["multilabel"] if self.multilabel else batch["label"]}

    def validate(self) -> dict[str, float | None]:
        metrics = evaluate(self.module.backbone, self.val_split, self.rt, self.cfg.batch_size, self.multilabel_f1)
        if not self.multilabel:
            return {"oa": metrics["oa"], "f1": metrics["f1"], "score": metrics["oa"]}
        if self.multilabel_selection == "subset-accuracy":
            return {"oa": None, "f1": metrics["f1"], "subset_accuracy": metrics["subset_accuracy"],
                    "score": metrics["subset_accuracy"]}
        return {"oa": None, "f1": metrics["f1"], "score": metrics["f1"]}
