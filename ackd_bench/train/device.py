"""Where a run's tensors and modules live: the device a name resolves to, and the one function
that places anything on it (so that the CPU stand-in for a GPU sees every placement)."""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import AckdError


def uses_channels_last(device: torch.device) -> bool:
    """channels-last on CUDA, where cuDNN's convolutions are fastest in it (and on its stand-in)."""
    from .standin import STANDIN

    return device.type == "cuda" or device == STANDIN


def place(tensor: torch.Tensor, device: torch.device, non_blocking: bool = False) -> torch.Tensor:
    """A tensor on the run's device (a no-op where it is there already)."""
    return tensor.to(device, non_blocking=non_blocking)


def place_module(module: nn.Module, device: torch.device) -> nn.Module:
    """A module on the run's device. On a channels-last device (`uses_channels_last`) each backbone
    gets the layout it computes in (models.backbones.COMPUTE_LAYOUT: channels-last, except
    ShuffleNetV2, whose channel shuffle works in NCHW) and converts its inputs to it on entry."""
    from ..models.backbones import Backbone
    from . import standin

    if device != standin.STANDIN:
        module = module.to(device)
    if uses_channels_last(device):
        module = module.to(memory_format=torch.channels_last)
        for child in module.modules():
            if isinstance(child, Backbone):
                child.to(memory_format=child.compute_layout)
                child.input_layout = child.compute_layout
    return standin.adopt(module) if device == standin.STANDIN else module


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`, `cpu`, `cuda` or `cuda:N` as a torch.device with an index where it is CUDA.

    `cuda` (and `auto` on a CUDA machine) is the process's own GPU: LOCAL_RANK under torchrun, else
    the first visible one. Indices count the GPUs CUDA_VISIBLE_DEVICES leaves visible. `standin`
    (tests) is the CPU stand-in for a GPU (train/standin.py).
    """
    name = name.strip().lower()
    if name == "standin":
        from . import standin

        return standin.activate()
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto":
        name = "cuda" if count else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise AckdError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
    if count == 0:
        raise AckdError(f"--device {name}: CUDA is not available on this machine{where}")
    if not index:
        local_rank = os.environ.get("LOCAL_RANK")
        index = local_rank if local_rank is not None else "0"
        if int(index) >= count:
            raise AckdError(f"--device {name}: LOCAL_RANK={index} but only {count} GPU(s) are visible{where}; "
                            f"start at most {count} processes per node")
    if int(index) >= count:
        raise AckdError(f"--device {name}: only {count} GPU(s) are visible{where}: expected cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", int(index))
