"""LSKD (Sun et al. 2024, logit standardisation): KD on z-scored logits.

Each sample's logits are standardised (mean 0, std 1; std + 1e-7) for teacher and student before
the temperature-scaled KL, which is multiplied by the base T^2. Invariant to logit shift and scale.
"""

from __future__ import annotations

import torch

from .base import Distiller, kl_teacher_student


def zscore(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)
    return (logits - mean) / (std + eps)


class LSKD(Distiller):
    name = "lskd"

    def __init__(self, num_classes: int, *, temperature: float):
        super().__init__(num_classes)
        self.temperature = temperature

    def forward(self, student, teacher, targets, epoch):
        s, t = zscore(student["logits"].float()), zscore(teacher["logits"].float())
        return {"lskd": kl_teacher_student(s, t, self.temperature) * self.temperature**2}
