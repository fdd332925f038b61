"""CTKD (Li et al. 2023): curriculum temperature, learned adversarially.

A global temperature tau = 1 + 20 * sigmoid(theta) is trained with the student, but through a
gradient-reversal layer: theta ascends the KD loss (making the task harder) while the student
descends it. The reversal strength lambda follows a cosine ramp from 0 to -1 over `ramp_epochs`
(reference code: 5; the CTKD authors: 10) and is applied once, inside the reversal layer's
backward (lambda is negative; nothing else negates). The KL is computed in log space, which keeps
it finite for any temperature. The reference code starts theta at 1 and leaves the KL unscaled;
the CTKD authors start at 1 too and multiply by tau^2 (`theta_init`, `t_squared`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import Distiller, kl_teacher_student


class ScaleGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by `lam` (lam < 0 reverses it)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.lam, None


def cosine_ramp(epoch: int, ramp_epochs: int, end: float = -1.0) -> float:
    """0 at epoch 0, `end` from `ramp_epochs` on, cosine-shaped in between."""
    progress = min(epoch / ramp_epochs, 1.0) if ramp_epochs > 0 else 1.0
    return end * 0.5 * (1 - math.cos(math.pi * progress))


class CTKD(Distiller):
    name = "ctkd"

    def __init__(self, num_classes: int, *, tau_min: float, tau_range: float, ramp_epochs: int,
                 t_squared: bool, theta_init: float):
        super().__init__(num_classes)
        self.theta = nn.Parameter(torch.full((1,), float(theta_init)))
        self.tau_min, self.tau_range, self.ramp_epochs, self.t_squared = tau_min, tau_range, ramp_epochs, t_squared

    def temperature(self, epoch: int) -> torch.Tensor:
        theta = ScaleGradient.apply(self.theta, cosine_ramp(epoch, self.ramp_epochs))
        return self.tau_min + self.tau_range * torch.sigmoid(theta)

    def forward(self, student, teacher, targets, epoch):
        tau = self.temperature(epoch)
        loss = kl_teacher_student(student["logits"].float(), teacher["logits"].float(), tau)
        return {"ctkd": (loss * tau.squeeze() ** 2 if self.t_squared else loss).squeeze()}

    def diagnostics(self, epoch: int) -> dict[str, torch.Tensor]:
        return {"tau": (self.tau_min + self.tau_range * torch.sigmoid(self.theta.detach())).squeeze()}

