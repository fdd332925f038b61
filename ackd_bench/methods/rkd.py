"""RKD (Park et al. 2019): distance- and angle-wise relations of pooled features.

Distances are mean-normalised (scale invariant), compared with smooth-L1; reference weights
distance 25, angle 50, and an overall scale of 0.1.
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import Distiller, mean_normalised, pairwise_distances, triplet_angles


class RKD(Distiller):
    name = "rkd"
    teacher_outputs = ("pooled",)

    def __init__(self, num_classes: int, *, distance_weight: float, angle_weight: float, scale: float):
        super().__init__(num_classes)
        self.distance_weight, self.angle_weight, self.scale = distance_weight, angle_weight, scale

    def forward(self, student, teacher, targets, epoch):
        s, t = student["pooled"].float(), teacher["pooled"].float().detach()
        distance = F.smooth_l1_loss(mean_normalised(pairwise_distances(s)), mean_normalised(pairwise_distances(t)))
        angle = F.smooth_l1_loss(triplet_angles(s), triplet_angles(t))
        return {
            "rkd_distance": self.scale * self.distance_weight * distance,
            "rkd_angle": self.scale * self.angle_weight * angle,
        }
