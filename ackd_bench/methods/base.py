"""The interface every distillation loss implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


class Distiller(nn.Module, ABC):
    """teacher outputs + student outputs + targets + epoch -> named, already weighted loss terms.

    Their sum is L_kd of Eq. 20. `student` and `teacher` are backbone output dicts (`logits`,
    `pooled`, `tokens`); teacher tensors arrive detached. A distiller may own parameters (CTKD's
    temperature): they are trained with the student.
    """

    name: ClassVar[str]
    teacher_outputs: ClassVar[tuple[str, ...]] = ("logits",)

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    @abstractmethod
    def forward(self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor],
                targets: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]: ...

    def diagnostics(self, epoch: int) -> dict[str, torch.Tensor]:
        """Values worth logging that are not loss terms (e.g. a learned temperature), as 0-dim tensors
        on the parameters' device: reading them on the host would stall every training step."""
        return {}


def kl_teacher_student(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature) -> torch.Tensor:
    """KL(teacher || student) at a temperature, batch-mean, computed in log space (finite for any logits)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def pairwise_distances(x: torch.Tensor, squared: bool = False, eps: float = 1e-12) -> torch.Tensor:
    """(B, B) Euclidean distances; the square is clamped before the root so gradients stay finite."""
    square = x.pow(2).sum(dim=1)
    d2 = (square.unsqueeze(1) + square.unsqueeze(0) - 2 * x @ x.t()).clamp(min=eps)
    d = d2 if squared else d2.sqrt()
    return d * (1 - torch.eye(len(x), device=x.device, dtype=x.dtype))


def mean_normalised(d: torch.Tensor) -> torch.Tensor:
    """Divide a distance matrix by the mean of its positive entries (RKD's scale invariance).

    A masked sum, not `d[d > 0]`: boolean indexing has a data-dependent size, which waits for the GPU."""
    positive = d > 0
    count = positive.sum()
    mean = torch.where(positive, d, torch.zeros_like(d)).sum() / count.clamp_min(1)
    return d / torch.where(count > 0, mean, torch.ones_like(mean))  # no positive entry: d is all zeros, kept


def triplet_angles(x: torch.Tensor) -> torch.Tensor:
    """cos of the angle at each anchor between every pair of other points: (B*B*B,)."""
    diff = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)
