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
from .runs import evaluate, flip, seeded_generator, train_loader


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
                 augment: Sequence[str], seed: int, rt: Runtime):
        self.module = ClassifierModule(backbone, train.multilabel)
        self.train, self.val, self.cfg, self.augment, self.seed, self.rt = train, val, cfg, augment, seed, rt

    def train_batches(self, epoch: int):
        return train_loader(self.train, self.cfg.batch_size, self.seed, epoch, self.rt)

    def prepare(self, batch: dict[str, Any], epoch: int, step: int) -> dict[str, Any]:
        generator = seeded_generator(self.seed, epoch, step, self.rt.ctx.rank, 2)
        images = flip(batch["image"], self.augment, generator)
        targets = batch["multilabel"] if self.train.multilabel else batch["label"]
        return {"images": self.rt.to_device(images), "targets": targets.to(self.rt.device)}

    def validate(self) -> dict[str, float | None]:
        metrics = evaluate(self.module.backbone, self.val, self.rt, self.cfg.batch_size)
        score = metrics["f1"] if self.val.multilabel else metrics["oa"]
        return {"oa": metrics["oa"], "f1": metrics["f1"], "score": score}
