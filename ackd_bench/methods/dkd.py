"""DKD (Zhao et al. 2022): KD decoupled into target-class (TCKD) and non-target-class (NCKD) parts.

KL(p_t || p_s) = KL(b_t || b_s) + (1 - p_t[gt]) * KL(p^_t || p^_s), with b the binary (target,
rest) distribution and p^ the distribution over non-target classes. Both log-distributions are
computed with log-sum-exp over logits (never the log of a masked softmax), so extreme logits stay
finite. Loss = warmup(epoch) * (alpha * TCKD + beta * NCKD) * T^2, warm-up linear over 20 epochs:
from 0 in the first epoch as the reference code (`Distillers/DKD.py:65`, epochs from 0), or from
1/20 as mdistiller.
"""

from __future__ import annotations

import torch

from ..errors import AckdError
from .base import Distiller


def _binary_and_rest_log_probs(logits: torch.Tensor, gt_mask: torch.Tensor):
    log_z = torch.logsumexp(logits, dim=1, keepdim=True)
    log_target = (logits * gt_mask).sum(dim=1, keepdim=True) - log_z
    log_rest = torch.logsumexp(logits.masked_fill(gt_mask, float("-inf")), dim=1, keepdim=True) - log_z
    log_binary = torch.cat([log_target, log_rest], dim=1)
    log_nontarget = logits.masked_fill(gt_mask, float("-inf"))
    log_nontarget = log_nontarget - torch.logsumexp(log_nontarget, dim=1, keepdim=True)
    return log_binary, log_nontarget


def _kl_from_logs(log_p: torch.Tensor, log_q: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """sum_i p_i (log p_i - log q_i), batch-mean, skipping masked-out entries (where p = q = 0)."""
    terms = log_p.exp() * (log_p - log_q)
    if mask is not None:
        terms = terms.masked_fill(mask, 0.0)
    return terms.sum(dim=1).mean()


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Unweighted (TCKD, NCKD) at a temperature, without the T^2 factor."""
    gt_mask = torch.zeros_like(student_logits, dtype=torch.bool).scatter_(1, targets.view(-1, 1), True)
    s_binary, s_rest = _binary_and_rest_log_probs(student_logits / temperature, gt_mask)
    t_binary, t_rest = _binary_and_rest_log_probs(teacher_logits / temperature, gt_mask)
    return _kl_from_logs(t_binary, s_binary), _kl_from_logs(t_rest, s_rest, gt_mask)


class DKD(Distiller):
    name = "dkd"

    def __init__(self, num_classes: int, *, alpha: float, beta: float, temperature: float,
                 warmup_epochs: int, warmup_first_epoch: int):
        super().__init__(num_classes)
        if num_classes < 3:
            raise AckdError(f"dkd needs at least 3 classes (its non-target term is degenerate), this dataset has {num_classes}")
        if warmup_first_epoch not in (0, 1):
            raise AckdError(f"dkd warmup_first_epoch {warmup_first_epoch!r}: expected 0 (the reference code) or 1 (mdistiller)")
        self.alpha, self.beta, self.temperature, self.warmup_epochs = alpha, beta, temperature, warmup_epochs
        self.warmup_first_epoch = warmup_first_epoch

    def forward(self, student, teacher, targets, epoch):
        tckd, nckd = dkd_terms(student["logits"].float(), teacher["logits"].float(), targets, self.temperature)
        # `epoch` counts from 0; the warm-up counts the first epoch as warmup_first_epoch
        warmup = min((epoch + self.warmup_first_epoch) / self.warmup_epochs, 1.0) if self.warmup_epochs > 0 else 1.0
        scale = warmup * self.temperature**2
        return {"dkd_tckd": scale * self.alpha * tckd, "dkd_nckd": scale * self.beta * nckd}
