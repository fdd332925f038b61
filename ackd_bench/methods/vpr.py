"""VPR = DistilVPR (Wang et al., AAAI 2024): cross-modal relational distillation on embeddings.

Implemented terms (B x B relation matrices of pooled embeddings), following the authors' code:
- cross-relation terms on L2-normalised embeddings ("st2ss"): the student-student matrix is pulled
  towards the (stop-gradient) student-teacher matrix, by MSE, in three geometries: Euclidean
  distance, cosine similarity, and geodesic distance after the exponential map onto a Poincare
  ball of curvature c = 0.1; and ("tt2st") the student-teacher matrix towards the teacher-teacher one.
- RKD-G: RKD distance and angle plus the mean-normalised Poincare geodesic-distance relation
  (smooth-L1, weights 1/1/1) on the raw embeddings (`rkdg_embeddings: raw`, the reference code) or
  on the L2-normalised ones (`l2`).
Weights are in baselines/vpr.yaml (the reference: 0.1, 0.1 and 10).
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

    def __init__(self, num_classes: int, *, curvature: float, cross_weight: float,
                 tt2st_weight: float, rkdg_weight: float, rkdg_embeddings: str):
        super().__init__(num_classes)
        if rkdg_embeddings not in ("raw", "l2"):
            raise ValueError(f"rkdg_embeddings is {rkdg_embeddings!r}: expected raw or l2")
        self.c, self.cross_weight, self.tt2st_weight, self.rkdg_weight = curvature, cross_weight, tt2st_weight, rkdg_weight
        self.rkdg_embeddings = rkdg_embeddings

    def _relations(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "euclidean": euclidean_cross(a, b),
            "cosine": a @ b.t(),
            "geodesic": poincare_distances(expmap0(a, self.c), expmap0(b, self.c), self.c),
        }

    def forward(self, student, teacher, targets, epoch):
        raw_s, raw_t = student["pooled"].float(), teacher["pooled"].float().detach()
        s, t = F.normalize(raw_s, dim=1), F.normalize(raw_t, dim=1)
        ss, st, tt = self._relations(s, s), self._relations(s, t), self._relations(t, t)
        terms = {}
        for geometry in ss:
            loss = self.cross_weight * F.mse_loss(ss[geometry], st[geometry].detach())
            if self.tt2st_weight:
                loss = loss + self.tt2st_weight * F.mse_loss(st[geometry], tt[geometry])
            terms[f"vpr_{geometry}"] = loss
        terms["vpr_rkdg"] = self.rkdg_weight * self._rkdg(*((raw_s, raw_t) if self.rkdg_embeddings == "raw" else (s, t)))
        return terms

    def _rkdg(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        off_diagonal = 1 - torch.eye(len(s), device=s.device)
        distance = F.smooth_l1_loss(mean_normalised(pairwise_distances(s)), mean_normalised(pairwise_distances(t)))
        angle = F.smooth_l1_loss(triplet_angles(s), triplet_angles(t))
        geodesic = F.smooth_l1_loss(
            mean_normalised(poincare_distances(expmap0(s, self.c), expmap0(s, self.c), self.c) * off_diagonal),
            mean_normalised(poincare_distances(expmap0(t, self.c), expmap0(t, self.c), self.c) * off_diagonal))
        return distance + angle + geodesic
