"""What teacher, matcher and student runs share: run directories, loaders, augmentation,
prediction and evaluation (exact across DDP ranks)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from ..data.dataset import ShardDataset
from .distributed import gather_concat
from .engine import Runtime, TrainingError
from .metrics import multi_label_metrics, single_label_metrics

RUN_FILES = ("checkpoints", "log.csv", "result.json", "result.csv", "config.json", "tensorboard")


def prepare_run_dir(run_dir: Path, *, resume: bool, force: bool) -> None:
    """Refuse to overwrite an earlier run unless asked; --force clears only this tool's files."""
    if force:
        for name in RUN_FILES:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    elif not resume:
        if (run_dir / "result.json").exists():
            raise TrainingError(f"{run_dir}: run already finished (result.json exists); pass --force to run it again")
        if (run_dir / "checkpoints" / "last.pt").exists():
            raise TrainingError(
                f"{run_dir}: holds a checkpoint of an unfinished run; pass --resume to continue it or --force to start over"
            )
    run_dir.mkdir(parents=True, exist_ok=True)


def seeded_generator(*keys: int) -> torch.Generator:
    """A generator that depends only on the keys (seed, epoch, ...), so resume replays it exactly."""
    seed = int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(seed)


def train_loader(dataset: Dataset, batch_size: int, seed: int, epoch: int, rt: Runtime) -> DataLoader:
    per_rank = max(1, batch_size // rt.ctx.world_size)
    if rt.ctx.enabled:
        sampler = DistributedSampler(dataset, rt.ctx.world_size, rt.ctx.rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(dataset, generator=seeded_generator(seed, epoch))
    return DataLoader(
        dataset, batch_size=per_rank, sampler=sampler, num_workers=rt.workers, pin_memory=rt.cuda,
        drop_last=len(dataset) > per_rank,  # a 1-sample last batch would break BatchNorm
        generator=seeded_generator(seed, epoch, 1),
    )


def flip(images: torch.Tensor, augment: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """Random horizontal/vertical flips per sample, drawn from a (seed, epoch, step) generator."""
    batch = images.shape[0]
    for name, dim in (("hflip", -1), ("vflip", -2)):
        if name in augment:
            chosen = (torch.rand(batch, generator=generator) < 0.5).to(images.device)
            images = torch.where(chosen.view(-1, 1, 1, 1), images.flip(dim), images)
    return images


@torch.no_grad()
def predict(model: nn.Module, dataset: ShardDataset, rt: Runtime, batch_size: int, indices: np.ndarray | None = None,
            outputs: Sequence[str] = ("logits",)) -> dict[str, torch.Tensor]:
    """Outputs of `model` for `indices` (default: all), each rank computing a strided part;
    results are gathered and returned in index order on every rank."""
    was_training = model.training
    model.eval()
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    mine = np.arange(len(indices))[rt.ctx.rank::rt.ctx.world_size]
    collected: dict[str, list[torch.Tensor]] = {k: [] for k in outputs}
    for start in range(0, len(mine), batch_size):
        positions = mine[start:start + batch_size]
        batch = dataset.__getitems__(indices[positions].tolist())
        images = rt.to_device(torch.stack([b["image"] for b in batch]))
        with rt.autocast():
            out = model(images)
        for key in outputs:
            collected[key].append(out[key].float().cpu())
    result = {}
    for key, parts in collected.items():
        local = torch.cat(parts) if parts else torch.zeros(0)
        gathered = gather_concat(local, rt.ctx)
        owner = np.concatenate([np.arange(len(indices))[r::rt.ctx.world_size] for r in range(rt.ctx.world_size)])
        ordered = torch.empty_like(gathered)
        ordered[torch.from_numpy(owner)] = gathered
        result[key] = ordered
    model.train(was_training)
    return result


def evaluate(model: nn.Module, dataset: ShardDataset, rt: Runtime, batch_size: int) -> dict[str, Any]:
    logits = predict(model, dataset, rt, batch_size)["logits"].numpy()
    if dataset.multilabel:
        targets = np.stack([dataset.reader.read(i, "multilabels") for i in range(len(dataset))])
        return {**multi_label_metrics(targets, logits), "n": len(dataset)}
    return {**single_label_metrics(dataset.labels, logits), "n": len(dataset)}


def device_name(rt: Runtime) -> str:
    if rt.cuda:
        name = torch.cuda.get_device_name(rt.device)
        return f"{name} x{rt.ctx.world_size}" if rt.ctx.enabled else name
    return f"cpu x{rt.ctx.world_size}" if rt.ctx.enabled else "cpu"
