"""CORAL (Sun & Saenko 2016) between two batches of features, Eq. 19.

Normalisation (the reference code's): unnormalised covariances C = Xc^T Xc of the centred batch,
loss = mean((C_a - C_b)^2) / (4 d) = ||C_a - C_b||_F^2 / (4 d^3).

Flattened tokens have d = N * 512 >> B, so the Frobenius norm is computed from B x B Gram matrices:
||A^T A - B^T B||_F^2 = ||A A^T||_F^2 - 2 ||A B^T||_F^2 + ||B B^T||_F^2, O(B^2 d) instead of O(B d^2).
"""

from __future__ import annotations

import torch


def coral(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.shape != b.shape:
        raise ValueError(f"CORAL needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    a = a.flatten(1).float()
    b = b.flatten(1).float()
    d = a.shape[1]
    a = a - a.mean(dim=0, keepdim=True)
    b = b - b.mean(dim=0, keepdim=True)
    frobenius2 = (a @ a.t()).pow(2).sum() - 2 * (a @ b.t()).pow(2).sum() + (b @ b.t()).pow(2).sum()
    return frobenius2.clamp_min(0) / (4 * float(d) ** 3)
