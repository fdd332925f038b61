"""torchrun integration: process group from the environment, rank helpers, exact gathers."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def group_settings(device: torch.device) -> dict:
    """How a rank joins the process group: NCCL bound to its own GPU (`device_id`, so that NCCL's
    communicator is created for that device at once rather than guessed at the first collective),
    gloo on the CPU."""
    if device.type == "cuda":
        return {"backend": "nccl", "device_id": device}
    return {"backend": "gloo"}


def init_from_env(device: torch.device) -> DistContext:
    """Join the process group when launched by torchrun: on a GPU, the rank's device is made current
    first (NCCL and every collective use the current device), then the group is joined bound to it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(**group_settings(device))
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def gather_objects(value, ctx: DistContext) -> list:
    """Every rank's `value`, in rank order (one element where there are no ranks)."""
    if not ctx.enabled:
        return [value]
    parts: list = [None] * ctx.world_size
    dist.all_gather_object(parts, value)
    return parts


def gather_concat(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate each rank's rows in rank order (rows may differ in number across ranks)."""
    if not ctx.enabled:
        return tensor
    parts: list = [None] * ctx.world_size
    dist.all_gather_object(parts, tensor.cpu())
    return torch.cat(parts)


def all_ranks_max(value: int, ctx: DistContext, device: torch.device) -> int:
    """The largest of every rank's value (so that all ranks take the same decision)."""
    if not ctx.enabled:
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
