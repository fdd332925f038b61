"""The Planner (Eq. 14-18): learnable transport plans that re-weight tokens before CORAL.

Per modality, a multi-head attention map over the tokens (qkv without bias, scale d^-1/2; Eq.
15-16) averaged over queries gives, per head, how much each token is attended to (each row sums
to 1). Cross-modal plans (Eq. 17) come from the outer product of the two sides' plans, mean-pooled
over the other side and normalised by the side's own mean, as in the reference code. Because each
plan sums to 1, that product factorises: the teacher's cross plan equals its own plan times
N_T / N_S (and symmetrically), so the coupling acts as a fixed scale; it is kept as specified.
Tokens are re-weighted by the head-mean plan (Eq. 18) and rescaled so that the energy of their
token-mean is preserved (the reference code's `align_feats`).
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionPlan(nn.Module):
    """Eq. 15-16 for one modality: (B, N, C) tokens -> (B, H, N) attention received per token."""

    def __init__(self, dim: int = 512, heads: int = 8):
        super().__init__()
        if dim % heads:
            raise ValueError(f"planner: dim {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, dim // heads
        self.qk = nn.Linear(dim, 2 * dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, n, dim = tokens.shape
        q, k = self.qk(tokens).reshape(batch, n, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attention = torch.softmax((q @ k.transpose(-2, -1)) * self.head_dim**-0.5, dim=-1)
        return attention.mean(dim=-2)


def cross_modal_plans(plan_t: torch.Tensor, plan_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 17: (B, H, N_T), (B, H, N_S) -> cross plans of the same shapes."""
    outer = plan_t.unsqueeze(-2) * plan_s.unsqueeze(-1)  # (B, H, N_S, N_T)
    cross_t = outer.mean(dim=-2) / plan_t.mean(dim=-1, keepdim=True)
    cross_s = outer.mean(dim=-1) / plan_s.mean(dim=-1, keepdim=True)
    return cross_t, cross_s


def reweight(tokens: torch.Tensor, plan: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Eq. 18 with the energy-preserving rescale: tokens (B, N, C) x head-mean plan (B, N)."""
    weights = plan.mean(dim=1).unsqueeze(-1)
    before = tokens.mean(dim=1).pow(2).sum(dim=1, keepdim=True)
    after = (tokens * weights).mean(dim=1).pow(2).sum(dim=1, keepdim=True)
    scale = (before / after.clamp_min(eps)).sqrt().unsqueeze(-1)
    return scale * weights * tokens


class Planner(nn.Module):
    """Both modalities' plans; returns the re-weighted teacher and student tokens D_T, D_S."""

    def __init__(self, dim: int = 512, heads: int = 8):
        super().__init__()
        self.teacher_plan = AttentionPlan(dim, heads)
        self.student_plan = AttentionPlan(dim, heads)

    def forward(self, teacher_tokens: torch.Tensor, student_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cross_t, cross_s = cross_modal_plans(self.teacher_plan(teacher_tokens), self.student_plan(student_tokens))
        return reweight(teacher_tokens, cross_t), reweight(student_tokens, cross_s)
