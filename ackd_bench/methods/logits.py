"""Logit matching (Ba & Caruana 2014): MSE between student and teacher logits, scaled by 0.01."""

from __future__ import annotations

import torch.nn.functional as F

from .base import Distiller


class Logits(Distiller):
    name = "logits"

    def __init__(self, num_classes: int, *, scale: float):
        super().__init__(num_classes)
        self.scale = scale

    def forward(self, student, teacher, targets, epoch):
        return {"logits_mse": self.scale * F.mse_loss(student["logits"].float(), teacher["logits"].float())}
