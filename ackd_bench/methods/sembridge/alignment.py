"""Semantic-aware Knowledge Alignment: L_ot1 = CORAL(D_T, D_S) on Planner-re-weighted tokens and
L_ot2 = CORAL(z_T, z_S) on pooled features (Eq. 19). Either term can be switched off (Table 6);
`coral_form` is CORAL's normalisation (coral.py, options.coral)."""

from __future__ import annotations

import torch
from torch import nn

from .coral import coral
from .planner import Planner


class KnowledgeAlignment(nn.Module):
    def __init__(self, ot1: bool = True, ot2: bool = True, dim: int = 512, heads: int = 8,
                 coral_form: str = "reference"):
        super().__init__()
        self.ot2, self.coral_form = ot2, coral_form
        self.planner = Planner(dim, heads) if ot1 else None

    def forward(self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = {}
        if self.planner is not None:
            if teacher["tokens"].shape[1] != student["tokens"].shape[1]:
                raise ValueError(
                    f"L_ot1 needs equal token grids: teacher has {teacher['tokens'].shape[1]}, "
                    f"student {student['tokens'].shape[1]} (RGB images are resized to the MS size when built)"
                )
            d_t, d_s = self.planner(teacher["tokens"].float(), student["tokens"].float())
            terms["ot1"] = coral(d_t, d_s, self.coral_form)
        if self.ot2:
            terms["ot2"] = coral(teacher["pooled"].float(), student["pooled"].float(), self.coral_form)
        return terms
