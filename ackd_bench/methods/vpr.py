"""VPR = DistilVPR (Wang et al., AAAI 2024): cross-modal relational distillation on embeddings.

Implemented terms, on L2-normalised pooled embeddings (B x B matrices), following the authors' code:
- cross-relation terms ("st2ss"): the student-student matrix is pulled towards the
  (stop-gradient) student-teacher matrix, by MSE, in three geometries: Euclidean distance, cosine
  similarity, and geodesic distance after the exponential map onto a Poincare ball of curvature
  c = 0.1. Weight 0.1 each, as in the authors' published commands. The authors' optional "tt2st"
  terms (student-teacher towards teacher-teacher) are off by default there and here (weight 0).
- RKD-G: RKD distance and angle plus the mean-normalised Poincare geodesic-distance relation
  (smooth-L1, weights 1/1/1), overall weight 1 (the authors use 1 or 10 per dataset).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Distiller, mean_normalised, pairwise_distances, triplet_angles


def expmap0(x: torch.Tensor, c: float, eps: float = 1e-5) -> torch.Tensor:
    """Exponential map at the origin of the Poincare ball, projected strictly inside the ball."""
    sqrt_c = c**0.5
    norm = x.norm(dim=-1, keepdim=True).clamp_min(eps)
    y = torch.tanh(sqrt_c * norm) * x / (sqrt_c * norm)
    max_norm = (1 - 1e-3) / sqrt_c
    y_norm = y.norm(dim=-1, keepdim=True).clamp_min(eps)
    return torch.where(y_norm > max_norm, y / y_norm * max_norm, y)


def poincare_distances(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """(Bx, By) geodesic distances: arcosh(1 + 2c|x-y|^2 / ((1-c|x|^2)(1-c|y|^2))) / sqrt(c)."""
    diff2 = (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(-1)
    denom = (1 - c * x.pow(2).sum(-1)).unsqueeze(1) * (1 - c * y.pow(2).sum(-1)).unsqueeze(0)
    argument = 1 + 2 * c * diff2 / denom.clamp_min(1e-6)
    return torch.acosh(argument.clamp_min(1 + 1e-7)) / c**0.5


def euclidean_cross(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.unsqueeze(1) - y.unsqueeze(0)).pow(2).sum(-1).clamp_min(1e-12).sqrt()


class VPR(Distiller):
    name = "vpr"
    teacher_outputs = ("pooled",)

    def __init__(self, num_classes: int, curvature: float = 0.1, cross_weight: float = 0.1,
                 tt2st_weight: float = 0.0, rkdg_weight: float = 1.0):
        super().__init__(num_classes)
        self.c, self.cross_weight, self.tt2st_weight, self.rkdg_weight = curvature, cross_weight, tt2st_weight, rkdg_weight

    def _relations(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "euclidean": euclidean_cross(a, b),
            "cosine": a @ b.t(),
            "geodesic": poincare_distances(expmap0(a, self.c), expmap0(b, self.c), self.c),
        }

    def forward(self, student, teacher, targets, epoch):
        s = F.normalize(student["pooled"].float(), dim=1)
        t = F.normalize(teacher["pooled"].float().detach(), dim=1)
        ss, st, tt = self._relations(s, s), self._relations(s, t), self._relations(t, t)
        terms = {}
        for geometry in ss:
            loss = self.cross_weight * F.mse_loss(ss[geometry], st[geometry].detach())
            if self.tt2st_weight:
                loss = loss + self.tt2st_weight * F.mse_loss(st[geometry], tt[geometry])
            terms[f"vpr_{geometry}"] = loss
        distance = F.smooth_l1_loss(mean_normalised(pairwise_distances(s)), mean_normalised(pairwise_distances(t)))
        angle = F.smooth_l1_loss(triplet_angles(s), triplet_angles(t))
        geodesic = F.smooth_l1_loss(mean_normalised(ss["geodesic"] * (1 - torch.eye(len(s), device=s.device))),
                                    mean_normalised(tt["geodesic"] * (1 - torch.eye(len(t), device=t.device))))
        terms["vpr_rkdg"] = self.rkdg_weight * (distance + angle + geodesic)
        return terms
