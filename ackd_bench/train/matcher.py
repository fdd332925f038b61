"""SSM's matcher as a training task, and the matcher built from a dataset or loaded from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..data.dataset import ShardDataset
from ..data.manifest import Manifest
from ..methods.sembridge.matcher import Matcher, rgb_band_indices
from .checkpoint import check_compatible, load_checkpoint, load_weights, require_fields, untouched_rng
from .engine import OptimConfig, Runtime, Task
from .feed import Split, TrainFeed, as_split, open_splits, split_outputs
from .runs import eval_batch_size


def build_matcher(manifest: Manifest, arch: str, params: dict[str, Any], ms_bands: Sequence[str] | None = None
                  ) -> Matcher:
    """The matcher a dataset, the MS bands a run feeds (default: every stored band) and a run's
    `matcher_params` describe (training and loading alike). Its MS encoder sees those bands; the
    pseudo-RGB takes their first three (the reference's) or the recipe's R, G, B bands among them."""
    ms = manifest.modalities["ms"] if ms_bands is None else manifest.modalities["ms"].selected(ms_bands)
    first_bands = params.get("pseudo_rgb", "rgb-bands") != "rgb-bands"
    indices = [0, 1, 2] if first_bands else rgb_band_indices(list(ms.bands), ms.rgb_bands)
    return Matcher(len(ms.bands), indices, arch, **params, band_mean=list(ms.mean), band_std=list(ms.std),
                   multilabel=ms.multilabel)


def load_matcher(path: str | Path, manifest: Manifest, ms_bands: Sequence[str] | None = None) -> Matcher:
    state = load_checkpoint(path)
    check_compatible(state, {"kind": "matcher"}, path)
    check_compatible(state, {"dataset_version": manifest.dataset_version}, path)
    check_compatible(state, {"bands": list(manifest.modalities["ms"].bands if ms_bands is None else ms_bands)}, path)
    require_fields(state, ("arch", "matcher_params", "module"), path)
    with untouched_rng():
        matcher = build_matcher(manifest, state["arch"], state["matcher_params"], ms_bands)
    # matchers saved before the encoders lost their unused 1-class heads still load
    weights = {k: v for k, v in state["module"].items() if ".classifier." not in k} \
        if isinstance(state["module"], dict) else state["module"]
    load_weights(matcher, weights, path, f"a {state['arch']} matcher")
    return matcher.eval().requires_grad_(False)


@torch.no_grad()
def embed(encode, data: ShardDataset | Split, rt: Runtime, batch_size: int = 256, transform=None) -> torch.Tensor:
    """Embeddings of every sample of a dataset or split, float32 on the device."""
    split = as_split(data, rt)

    def outputs(images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": encode(transform(images) if transform else images)}

    return split_outputs(outputs, split, rt, batch_size, outputs=("embedding",))["embedding"]


class MatcherTask(Task):
    """Engine task: contrastive training on MS train, selection on MS val pair retrieval (top-1)."""

    def __init__(self, matcher: Matcher, train: ShardDataset, val: ShardDataset, cfg: OptimConfig,
                 augment: Sequence[str], seed: int, rt: Runtime):
        self.module, self.cfg, self.rt = matcher, cfg, rt
        self.train_split, self.val_split = open_splits([train, val], rt)
        self.feed = TrainFeed(self.train_split, cfg.batch_size, seed, augment, rt, stream=3)

    def train_batches(self, epoch: int):
        return self.feed.epoch(epoch)

    def prepare(self, batch: dict[str, Any], epoch: int, step: int) -> dict[str, Any]:
        return {"images": batch["image"]}

    def validate(self) -> dict[str, float | None]:
        was_training = self.module.training
        self.module.eval()
        batch = eval_batch_size(self.cfg.batch_size)
        ms = embed(self.module.embed_ms, self.val_split, self.rt, batch)
        rgb = embed(self.module.embed_rgb, self.val_split, self.rt, batch, transform=self.module.pseudo_rgb)
        self.module.train(was_training)
        loss = float(self.module.loss(ms, rgb))
        hits = (F.normalize(rgb, dim=1) @ F.normalize(ms, dim=1).t()).argmax(dim=1).eq(torch.arange(len(ms), device=ms.device))
        return {"clip_loss": loss, "top1": float(hits.float().mean()), "score": float(hits.float().mean()) - 1e-3 * loss}
