"""Training and evaluation batches on the device: a split held in device memory, or streamed.

A resident split reads its shards once into device memory in their stored dtype (uint8, or uint16
kept as int16 bits: 2 bytes per value, and gathers on every device), then normalises and flips on
the device: no DataLoader, no workers, no host transfer per step. A streamed split reads batches
through a DataLoader whose workers persist across epochs. Both draw the same batches for a seed:
the epoch's sample order and flips come from (seed, epoch[, step], rank) alone, are drawn on the
CPU before the epoch starts, and are applied to the images the same way on either path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.dataset import ShardDataset
from ..data.manifest import pixel_bytes
from ..errors import AckdError
from .distributed import DistContext
from .engine import Runtime, ignore_handled_signals

RESIDENT_MODES = ("auto", "on", "off")
RESIDENT_SHARE = 0.5  # of free device memory (or available RAM on CPU) a run's resident data may take


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator that depends only on the keys (seed, epoch, ...), so resume replays it exactly."""
    seed = int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class EpochPlan:
    """What one rank sees in one epoch: the sample order, batch bounds and per-sample flips."""

    order: torch.Tensor  # (M,) int64 sample indices, CPU
    bounds: list[tuple[int, int]]
    flips: torch.Tensor  # (steps, per_rank, 2) bool: horizontal, vertical

    def __len__(self) -> int:
        return len(self.bounds)


def plan_epoch(n: int, batch_size: int, seed: int, epoch: int, ctx: DistContext, augment: Sequence[str],
               stream: int) -> EpochPlan:
    """Shuffle (seed, epoch), split across ranks and into batches (the last dropped when partial and
    not the only one: a 1-sample batch breaks BatchNorm), and draw flips per (seed, epoch, step, rank)."""
    order = torch.randperm(n, generator=seeded_generator(seed, epoch))
    if ctx.enabled:  # as DistributedSampler: pad by wrapping so that every rank gets as many samples
        total = -(-n // ctx.world_size) * ctx.world_size
        order = torch.cat([order, order[:total - n]])[ctx.rank::ctx.world_size]
    per_rank = max(1, batch_size // ctx.world_size)
    count = len(order) if len(order) <= per_rank else len(order) // per_rank * per_rank
    bounds = [(start, min(start + per_rank, count)) for start in range(0, count, per_rank)]
    flips = torch.zeros(len(bounds), per_rank, 2, dtype=torch.bool)
    for step, (start, stop) in enumerate(bounds):
        generator = seeded_generator(seed, epoch, step, ctx.rank, stream)
        for column, name in enumerate(("hflip", "vflip")):
            if name in augment:
                flips[step, :stop - start, column] = torch.rand(stop - start, generator=generator) < 0.5
    return EpochPlan(order, bounds, flips)


def apply_flips(images: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Flip each image of (B, C, H, W) where flips (B, 2) says: [:, 0] horizontally, [:, 1] vertically."""
    images = torch.where(flips[:, 0].view(-1, 1, 1, 1), images.flip(-1), images)
    return torch.where(flips[:, 1].view(-1, 1, 1, 1), images.flip(-2), images)


class ResidentSplit:
    """A split's images, labels (and multi-labels) in device memory."""

    resident = True

    def __init__(self, dataset: ShardDataset, rt: Runtime):
        self.dataset, self.rt = dataset, rt
        raw = dataset.reader.read_all("images")
        self.stored_dtype = raw.dtype
        if raw.dtype == np.uint16:  # int16 bits: gathers work on every device; restored in images()
            raw = raw.view(np.int16)
        self.images_raw = rt.place(torch.from_numpy(raw))
        self.labels = rt.place(torch.from_numpy(dataset.labels))
        self.multilabels = None
        if dataset.multilabel:
            multi = np.concatenate(list(dataset.reader.read_column("multilabels"))).astype(np.float32)
            self.multilabels = rt.place(torch.from_numpy(multi))
        self.mean = rt.place(dataset.mean)
        self.inv_std = rt.place(dataset.inv_std)

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, indices: torch.Tensor) -> torch.Tensor:
        """Normalised float32 images (B, C, H, W) of `indices`, on the device."""
        raw = self.images_raw[self.rt.place(indices)]
        if self.stored_dtype == np.uint16:
            raw = raw.int() & 0xFFFF
        images = raw.float()
        if self.dataset.normalize:
            images = images.sub_(self.mean).mul_(self.inv_std)
        return self.rt.layout(images)

    def targets(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        indices = self.rt.place(indices)
        out = {"label": self.labels[indices], "index": indices}
        if self.multilabels is not None:
            out["multilabel"] = self.multilabels[indices]
        return out

    def all_multilabels(self) -> np.ndarray:
        return self.multilabels.cpu().numpy()


class StreamedSplit:
    """A split read from its shards on demand (training batches through persistent workers)."""

    resident = False

    def __init__(self, dataset: ShardDataset, rt: Runtime):
        self.dataset, self.rt = dataset, rt
        self.labels = torch.from_numpy(dataset.labels)

    def __len__(self) -> int:
        return len(self.dataset)

    def images(self, indices: torch.Tensor) -> torch.Tensor:
        raw = self.dataset.reader.read_images(indices.cpu().tolist())
        return self.rt.to_device(self.dataset.normalise(raw))

    def all_multilabels(self) -> np.ndarray:
        return np.concatenate(list(self.dataset.reader.read_column("multilabels")))


Split = ResidentSplit | StreamedSplit


def as_split(data: ShardDataset | Split, rt: Runtime) -> Split:
    """A dataset read on demand, or a split as it is."""
    return data if isinstance(data, Split) else StreamedSplit(data, rt)


def split_bytes(datasets: Sequence[ShardDataset]) -> int:
    """Device memory that holding these splits' images takes (their stored dtype, the bands they select)."""
    return sum(pixel_bytes(d.manifest, d.modality, d.split) // len(d.stored_bands) * len(d.bands) for d in datasets)


def reusable_bytes(free: int, reserved: int, allocated: int) -> int:
    """Device memory a new allocation can get: what the driver has free, plus what PyTorch's caching
    allocator holds reserved but not allocated (an earlier run's blocks in the same process: the
    bench, the demo, in-process sweeps), which the driver counts as used."""
    return free + max(0, reserved - allocated)


def memory_budget(device: torch.device) -> int:
    """Bytes resident data may take: a share of reusable device memory, or of available RAM on CPU."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        free = reusable_bytes(free, torch.cuda.memory_reserved(device), torch.cuda.memory_allocated(device))
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(free * RESIDENT_SHARE)


def decide_resident(mode: str, nbytes: int, device: torch.device) -> bool:
    if mode not in RESIDENT_MODES:
        raise AckdError(f"--resident {mode}: expected one of {', '.join(RESIDENT_MODES)}")
    if mode == "auto":
        return nbytes <= memory_budget(device)
    return mode == "on"


def open_splits(datasets: Sequence[ShardDataset], rt: Runtime, extra_bytes: int = 0) -> list[Split]:
    """A run's training-time splits, all resident or all streamed per `rt.resident` (auto: resident
    when they, plus `extra_bytes` such as a teacher cache, fit the memory budget)."""
    resident = decide_resident(rt.resident, split_bytes(datasets) + extra_bytes, rt.device)
    kind = ResidentSplit if resident else StreamedSplit
    return [kind(d, rt) for d in datasets]


class PlanSampler(Sampler):
    """Batch sampler over the current EpochPlan (set in the main process, so workers persist)."""

    def __init__(self):
        self.plan: EpochPlan | None = None
        self.partners: np.ndarray | None = None  # MS partner of each sample, where workers load it

    def __len__(self) -> int:
        return len(self.plan) if self.plan else 0

    def __iter__(self) -> Iterator[list]:
        for start, stop in self.plan.bounds:
            indices = self.plan.order[start:stop].tolist()
            yield [(i, int(self.partners[i])) for i in indices] if self.partners is not None else indices


class TrainFeed:
    """Batches of one training split for each epoch, on the device, flipped per the epoch's plan.

    Each batch is a dict: `image` (B, C, H, W) float, `label`, `index` (and `multilabel`, and for a
    streamed live teacher `ms_image`), all on the device.
    """

    def __init__(self, split: Split, batch_size: int, seed: int, augment: Sequence[str], rt: Runtime,
                 stream: int = 2, loader_dataset: Dataset | None = None):
        self.split, self.batch_size, self.seed, self.augment, self.rt, self.stream = (
            split, batch_size, seed, list(augment), rt, stream)
        self.sampler = PlanSampler()
        self.loader = None
        if not split.resident:
            self.loader = DataLoader(
                loader_dataset or split.dataset, batch_sampler=self.sampler, num_workers=rt.workers,
                pin_memory=rt.cuda, persistent_workers=rt.workers > 0,
                generator=seeded_generator(seed, stream),  # its base seed must not draw from the global RNG (dropout's)
                worker_init_fn=ignore_handled_signals,
            )

    def plan(self, epoch: int) -> EpochPlan:
        return plan_epoch(len(self.split), self.batch_size, self.seed, epoch, self.rt.ctx, self.augment, self.stream)

    def epoch(self, epoch: int) -> Iterator[dict[str, Any]]:
        plan = self.plan(epoch)
        flips = self.rt.place(plan.flips)  # one transfer per epoch
        if self.split.resident:
            order = self.rt.place(plan.order)
            for step, (start, stop) in enumerate(plan.bounds):
                indices = order[start:stop]
                images = apply_flips(self.split.images(indices), flips[step, :stop - start])
                # torch.where may hand back a contiguous tensor: channels-last again for cuDNN
                yield {"image": self.rt.layout(images), **self.split.targets(indices)}
            return
        self.sampler.plan = plan
        batches = enumerate(self.loader)
        while True:
            try:
                step, batch = next(batches)
            except StopIteration:
                return
            except AckdError as exc:  # a worker's: torch re-raises it with the worker's traceback in its text
                raise type(exc)(worker_message(exc)) from None
            batch = {k: self.rt.place(v) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            images = self.rt.layout(apply_flips(batch.pop("image"), flips[step, :len(batch["label"])]))
            yield {"image": images, **batch}

    def close(self) -> None:
        """Stop the loader's persistent workers now. They ignore SIGTERM (engine.ignore_handled_signals),
        and multiprocessing's exit handler stops daemonic children with SIGTERM, then joins them: a run
        that failed with its workers alive would never exit."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None:
            iterator._shutdown_workers()
            self.loader._iterator = None


def worker_message(exc: BaseException) -> str:
    """The message of an error a DataLoader worker raised, without the traceback torch adds to it."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    prefix = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    return last.removeprefix(prefix)


@torch.no_grad()
def split_outputs(model, split: Split, rt: Runtime, batch_size: int,
                  indices: np.ndarray | torch.Tensor | None = None, outputs: Sequence[str] = ("logits",),
                  ) -> dict[str, torch.Tensor]:
    """`model`'s outputs (a module, in eval mode meanwhile, or any images -> dict callable) for
    `indices` (default: all) of a split, in order, float32 on the device; under DDP each rank
    computes a strided part and the parts are gathered."""
    from .distributed import gather_concat

    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    if indices is None:
        indices = torch.arange(len(split))
    elif not isinstance(indices, torch.Tensor):
        indices = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    indices = indices.cpu()
    ctx = rt.ctx
    mine = indices[ctx.rank::ctx.world_size]
    if split.resident:  # one transfer, not one per batch
        mine = rt.place(mine)
    collected: dict[str, list[torch.Tensor]] = {k: [] for k in outputs}
    for start in range(0, len(mine), batch_size):
        with rt.autocast():
            out = model(split.images(mine[start:start + batch_size]))
        for key in outputs:
            collected[key].append(out[key].float())
    if isinstance(model, torch.nn.Module):
        model.train(was_training)
    result = {}
    for key, parts in collected.items():
        local = torch.cat(parts) if parts else rt.place(torch.zeros(0))
        if not ctx.enabled:
            result[key] = local
            continue
        gathered = gather_concat(local, ctx)
        owner = torch.cat([torch.arange(len(indices))[r::ctx.world_size] for r in range(ctx.world_size)])
        ordered = torch.empty_like(gathered)
        ordered[owner] = gathered
        result[key] = rt.place(ordered)
    return result
