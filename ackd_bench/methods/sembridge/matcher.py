"""The SSM matcher: MS and RGB encoders trained CLIP-style on MS images only (Eq. 6-9).

Each MS train image is paired with its own pseudo-RGB: the positive of a symmetric InfoNCE. At
matching time real RGB images go through the RGB encoder and are compared with the MS gallery.
Two forms of each piece, chosen by the profile (docs/FIDELITY.md rows 10 and 11):

- loss (`baselines/sembridge.yaml` matcher_losses): the reference's raw embeddings, temperature 1
  and learned soft targets, or L2-normalised embeddings at temperature 0.1 with identity targets
  (the reference form collapses with encoders trained from scratch);
- pseudo-RGB: the reference's, the MS input's first three bands: on single-label data each image
  over its own maximum of those bands, times 255, cut to uint8 and left unnormalised (0-255,
  `utils/dataset.py:69-70, 76, 208-213`), on multi-label M2S-GL the first three channels of the MS
  input as normalised (`:352-353`); `first-bands-image-max`, the image-max form mapped to [-1, 1]
  (what `paper` used before it reproduced the reference's); or the MS input's R, G, B bands as
  normalised (a per-band linear map from the MS band's train mean/std to the RGB channel's is,
  in the normalised input space both sides use, exactly the MS band's normalised value).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import AckdError
from ...models import build_backbone
from ...models.backbones import FEATURE_DIM


class ProjectionHead(nn.Module):
    """512 -> 256: linear, GELU, linear, dropout, residual, LayerNorm (CLIP-style head)."""

    def __init__(self, in_dim: int = FEATURE_DIM, dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.project = nn.Linear(in_dim, dim)
        self.fc = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.project(x)
        return self.norm(self.dropout(self.fc(F.gelu(projected))) + projected)


PSEUDO_RGB = ("reference", "first-bands-image-max", "rgb-bands")


def clip_loss(ms_embeddings: torch.Tensor, rgb_embeddings: torch.Tensor, temperature: float = 0.1,
              soft_targets: bool = True, normalise: bool = True, learned_targets: bool = False) -> torch.Tensor:
    """Symmetric InfoNCE between (optionally L2-normalised) embeddings at a temperature.

    With soft targets (the reference's CLIP variant) each row's target is the softmax of the
    average within-modality similarity, learned with the encoders (`learned_targets`, the
    reference) or held fixed; otherwise the identity. (The reference multiplies that average by
    the temperature where this divides: the same at its temperature of 1.)
    """
    ms = F.normalize(ms_embeddings, dim=1) if normalise else ms_embeddings
    rgb = F.normalize(rgb_embeddings, dim=1) if normalise else rgb_embeddings
    logits = rgb @ ms.t() / temperature
    if soft_targets:
        with torch.set_grad_enabled(learned_targets and torch.is_grad_enabled()):
            targets = F.softmax((ms @ ms.t() + rgb @ rgb.t()) / 2 / temperature, dim=-1)
    else:
        targets = torch.eye(len(ms), device=ms.device, dtype=logits.dtype)
    rgb_loss = -(targets * F.log_softmax(logits, dim=-1)).sum(dim=1)
    ms_loss = -(targets.t() * F.log_softmax(logits.t(), dim=-1)).sum(dim=1)
    return ((rgb_loss + ms_loss) / 2).mean()


def rgb_band_indices(ms_bands: Sequence[str], rgb_bands: Sequence[str] | None) -> list[int]:
    if not rgb_bands:
        raise AckdError("the dataset's MS side does not name its R, G, B bands (recipe modalities.ms.rgb_bands)")
    missing = [b for b in rgb_bands if b not in ms_bands]
    if missing:
        raise AckdError(f"the MS bands fed {list(ms_bands)} lack the RGB bands {missing} named by the recipe "
                        "(modalities.ms.rgb_bands)")
    return [list(ms_bands).index(b) for b in rgb_bands]


class Matcher(nn.Module):
    def __init__(self, ms_channels: int, rgb_indices: Sequence[int], arch: str = "resnet34", dim: int = 256,
                 dropout: float = 0.1, temperature: float = 0.1, soft_targets: bool = True, normalise: bool = True,
                 learned_targets: bool = False, pseudo_rgb: str = "rgb-bands",
                 band_mean: Sequence[float] | None = None, band_std: Sequence[float] | None = None,
                 multilabel: bool = False, heads: str = "projected"):
        super().__init__()
        if pseudo_rgb not in PSEUDO_RGB:
            raise AckdError(f"matcher pseudo_rgb {pseudo_rgb!r}: expected one of {', '.join(PSEUDO_RGB)}")
        # feature extractors: a classifier head would be a parameter no loss reaches (DDP refuses those)
        self.ms_encoder = build_backbone(arch, ms_channels, 0, heads=heads)
        self.rgb_encoder = build_backbone(arch, 3, 0, heads=heads)
        self.ms_head = ProjectionHead(FEATURE_DIM, dim, dropout)
        self.rgb_head = ProjectionHead(FEATURE_DIM, dim, dropout)
        # the reference's M2S-GL pseudo-RGB is the MS input's first three channels as they are
        self.pseudo_rgb_mode = "input-first-bands" if pseudo_rgb == "reference" and multilabel else pseudo_rgb
        if pseudo_rgb != "rgb-bands":
            rgb_indices = [0, 1, 2]
        if self.pseudo_rgb_mode in ("reference", "first-bands-image-max"):
            if band_mean is None or band_std is None:
                raise AckdError("the reference pseudo-RGB needs the MS bands' train mean and std (the manifest's)")
            self.register_buffer("band_mean", torch.tensor(list(band_mean)[:3]).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("band_std", torch.tensor(list(band_std)[:3]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_indices", torch.tensor(list(rgb_indices)), persistent=False)
        self.loss_form = {"temperature": temperature, "soft_targets": soft_targets, "normalise": normalise,
                          "learned_targets": learned_targets}

    def embed_ms(self, ms: torch.Tensor) -> torch.Tensor:
        return self.ms_head(self.ms_encoder(ms)["pooled"])

    def embed_rgb(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.rgb_head(self.rgb_encoder(rgb)["pooled"])

    def pseudo_rgb(self, ms: torch.Tensor) -> torch.Tensor:
        bands = ms.index_select(1, self.rgb_indices.to(ms.device))
        if self.pseudo_rgb_mode in ("rgb-bands", "input-first-bands"):
            return bands
        # the stored values (integers) before normalisation, each image over its own maximum
        raw = (bands.float() * self.band_std + self.band_mean).round()
        scaled = raw / raw.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        if self.pseudo_rgb_mode == "reference":
            return (scaled * 255).floor().to(ms.dtype)  # `* 255).astype(np.uint8)`, fed as 0-255
        return (scaled * 2 - 1).to(ms.dtype)  # ToTensor's [0, 1], then Normalize(0.5, 0.5)

    def loss(self, ms_embeddings: torch.Tensor, rgb_embeddings: torch.Tensor) -> torch.Tensor:
        with torch.autocast(ms_embeddings.device.type, enabled=False):  # similarities and softmax in float32
            return clip_loss(ms_embeddings.float(), rgb_embeddings.float(), **self.loss_form)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = self.loss(self.embed_ms(images), self.embed_rgb(self.pseudo_rgb(images)))
        return {"loss": loss, "clip": loss.detach()}
