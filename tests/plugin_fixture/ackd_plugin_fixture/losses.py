"""FixtureKD: the squared distance between tempered teacher and student probabilities."""

import torch.nn.functional as F

from ackd_bench.methods import Distiller


class FixtureKD(Distiller):
    name = "fixturekd"

    def __init__(self, num_classes: int, temperature: float = 2.0):
        super().__init__(num_classes)
        self.temperature = temperature

    def forward(self, student, teacher, targets, epoch):
        p_student = F.softmax(student["logits"] / self.temperature, dim=1)
        p_teacher = F.softmax(teacher["logits"] / self.temperature, dim=1)
        return {"fixturekd": F.mse_loss(p_student, p_teacher, reduction="sum") / len(p_student)}
