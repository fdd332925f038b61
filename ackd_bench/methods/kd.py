"""Vanilla KD (Hinton, Vinyals & Dean 2015): KL(teacher || student) at temperature T.

The reference setup uses T = 3 with batch-mean reduction and no T^2 factor.
"""

from __future__ import annotations

from .base import Distiller, kl_teacher_student


class KD(Distiller):
    name = "kd"

    def __init__(self, num_classes: int, *, temperature: float, t_squared: bool):
        super().__init__(num_classes)
        self.temperature, self.t_squared = temperature, t_squared

    def forward(self, student, teacher, targets, epoch):
        loss = kl_teacher_student(student["logits"], teacher["logits"], self.temperature)
        return {"kd": loss * self.temperature**2 if self.t_squared else loss}
