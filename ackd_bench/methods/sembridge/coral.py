"""CORAL (Sun & Saenko 2016) between two batches of features, Eq. 19, in two normalisations.

- `reference` (the reference code's, profile `paper`): unnormalised covariances C = Xc^T Xc of the
  centred batch, loss = mean((C_a - C_b)^2) / (4 d) = ||C_a - C_b||_F^2 / (4 d^3). C grows with the
  batch, so the loss grows as B^2: at batch 16 it is 256 times weaker than at 256.
- `covariance` (Sun & Saenko's, profile `bench`): C = Xc^T Xc / (B - 1), loss = ||C_a - C_b||_F^2 / (4 d^2),
  an estimate of a fixed quantity of the two feature distributions whatever the batch size.

Flattened tokens have d = N * 512 >> B, so the Frobenius norm is computed from B x B Gram matrices:
||A^T A - B^T B||_F^2 = ||A A^T||_F^2 - 2 ||A B^T||_F^2 + ||B B^T||_F^2, O(B^2 d) instead of O(B d^2).
"""

from __future__ import annotations

import torch

FORMS = ("reference", "covariance")


def coral(a: torch.Tensor, b: torch.Tensor, form: str = "reference") -> torch.Tensor:
    if a.shape != b.shape:
        raise ValueError(f"CORAL needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if form not in FORMS:
        raise ValueError(f"CORAL form {form!r}: expected one of {', '.join(FORMS)}")
    a = a.flatten(1).float()
    b = b.flatten(1).float()
    batch, d = a.shape
    a = a - a.mean(dim=0, keepdim=True)
    b = b - b.mean(dim=0, keepdim=True)
    frobenius2 = ((a @ a.t()).pow(2).sum() - 2 * (a @ b.t()).pow(2).sum() + (b @ b.t()).pow(2).sum()).clamp_min(0)
    if form == "reference":
        return frobenius2 / (4 * float(d) ** 3)
    return frobenius2 / (max(batch - 1, 1) ** 2 * 4 * float(d) ** 2)
