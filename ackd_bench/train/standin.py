"""A CPU stand-in for a CUDA device, so that the GPU path's bugs show on machines without one.

`--device standin` (tests, `pytest -m standin`) runs on the CPU, but every tensor placed on the
run's device (`device.place`, or a factory given `device=`) is a `DeviceTensor`, which a
TorchFunctionMode holds to CUDA's rules towards the host:

- `.numpy()` and `np.asarray` raise, as on CUDA; `.cpu()` / `.to("cpu")` give a host tensor;
- an operation that mixes a device tensor with a host tensor of one or more dimensions raises
  (0-dim host tensors are CPU scalars, which CUDA's elementwise kernels accept, but not `stack` or
  `cat`: there a 0-dim host tensor raises too), and so does indexing a host tensor with device
  indices;
- `.item()`, `.tolist()`, `float/int/bool()`, `.cpu()`, boolean-mask indexing, `nonzero`,
  `masked_select`, `unique` (and the like) on a device tensor are host syncs: `HostSyncs` counts
  them, and inside the engine's step loop (`step_loop`) records where each happened;
- a convolution whose input and weight disagree on the layout (channels-last against NCHW, either
  way round) is recorded (on CUDA one of them is converted on every call).

The stand-in device is `torch.device("cpu", 0)`: a CPU device that compares unequal to the host's
`torch.device("cpu")`, so `x.to(run_device)` and `x.to("cpu")` stay distinguishable. A device
tensor's `.device` reads as it, so `torch.zeros(..., device=x.device)` lands on the device too.

`checking_host_syncs(device)` is what tests enter: on the stand-in it yields the counts, on CUDA
it also puts the step loop under `torch.cuda.set_sync_debug_mode("error")`.
"""

from __future__ import annotations

import traceback
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

STANDIN = torch.device("cpu", 0)
HOST = torch.device("cpu")


class DeviceTensor(torch.Tensor):
    """A tensor on the stand-in device (CPU memory, CUDA's rules while the stand-in is active)."""

    __torch_function__ = torch._C._disabled_torch_function_impl  # the mode decides everything

    def __reduce_ex__(self, protocol):  # saved as a plain tensor: checkpoints load weights-only anywhere
        return torch.Tensor.__reduce_ex__(self.as_subclass(torch.Tensor), protocol)


@dataclass
class HostSyncs:
    """Host syncs seen while a check is active: all of them by kind, and those inside step loops."""

    total: Counter = field(default_factory=Counter)
    in_steps: list[str] = field(default_factory=list)  # "kind at file:line" for each sync inside a step loop
    layout_mismatches: list[str] = field(default_factory=list)
    steps: int = 0

    def record(self, kind: str, in_step: bool) -> None:
        self.total[kind] += 1
        if in_step:
            self.in_steps.append(f"{kind} at {_caller()}")


def _caller() -> str:
    """The innermost frame of this project (outside this module) that led to a call."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        if "ackd_bench" in frame.filename and not frame.filename.endswith(("standin.py", "train/device.py")):
            return f"{frame.filename.split('ackd_bench/')[-1]}:{frame.lineno}"
    return "outside ackd_bench"


class _State:
    mode: "StandInMode | None" = None
    syncs: HostSyncs | None = None
    in_step = False
    allowed = False


def active() -> bool:
    return _State.mode is not None


def _is_device(value: Any) -> bool:
    return isinstance(value, DeviceTensor)


def _wrap(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and not isinstance(value, DeviceTensor):
        return value.as_subclass(DeviceTensor)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # torch.return_types (max, sort, ...)
        return type(value)(tuple(_wrap(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_wrap(v) for v in value)
    return value


def _unwrap(value: torch.Tensor) -> torch.Tensor:
    return value.as_subclass(torch.Tensor) if isinstance(value, DeviceTensor) else value


def _tensors(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    found = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, torch.Tensor))
    return found


def _as_device(value: Any) -> torch.device | None:
    if isinstance(value, torch.device):
        return value
    if isinstance(value, str):
        try:
            return torch.device(value)
        except RuntimeError:
            return None
    if isinstance(value, DeviceTensor):  # x.to(other)
        return STANDIN
    if isinstance(value, torch.Tensor):
        return HOST
    return None


def _target_device(func, args: tuple, kwargs: dict) -> torch.device | None:
    """Where a call explicitly puts its result: `device=`, or `.to(device | tensor)`."""
    if "device" in kwargs and kwargs["device"] is not None:
        return _as_device(kwargs["device"])
    if func is torch.Tensor.to:
        for value in args[1:]:
            if (device := _as_device(value)) is not None:
                return device
    return None


_DEVICE_GETTER = torch.Tensor.device.__get__
_IS_CUDA_GETTER = torch.Tensor.is_cuda.__get__
_TO_NUMPY = {torch.Tensor.numpy, torch.Tensor.__array__}
_SCALAR_READS = {torch.Tensor.item: "item", torch.Tensor.tolist: "tolist", torch.Tensor.__float__: "float",
                 torch.Tensor.__int__: "int", torch.Tensor.__bool__: "bool", torch.Tensor.__index__: "index",
                 torch.Tensor.__complex__: "complex", torch.Tensor.__repr__: "repr", torch.Tensor.__format__: "format"}
_DATA_DEPENDENT = {torch.nonzero: "nonzero", torch.Tensor.nonzero: "nonzero", torch.masked_select: "masked_select",
                   torch.Tensor.masked_select: "masked_select", torch.unique: "unique", torch.Tensor.unique: "unique",
                   torch.unique_consecutive: "unique", torch.Tensor.unique_consecutive: "unique",
                   torch.equal: "equal", torch.allclose: "allclose", torch.bincount: "bincount",
                   torch.Tensor.bincount: "bincount", torch.argwhere: "nonzero", torch.Tensor.argwhere: "nonzero"}
_MIXING_ALLOWED = {torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.__getitem__, torch.Tensor.__setitem__,
                   torch.Tensor.index_put_, torch.Tensor.set_, torch._has_compatible_shallow_copy_type}
_CONVOLUTIONS = {torch.conv2d, F.conv2d}
_JOINING = {torch.stack, torch.cat, torch.concat, torch.concatenate, torch.hstack, torch.vstack, torch.dstack}


class StandInMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func == _DEVICE_GETTER:
            return STANDIN if _is_device(args[0]) else func(*args)
        if func == _IS_CUDA_GETTER:
            return func(*args)
        tensors = _tensors(args, kwargs)
        on_device = [t for t in tensors if _is_device(t)]
        if func is torch.Tensor.as_subclass:
            return func(*args, **kwargs)
        if on_device:
            self._check(func, args, tensors, on_device)
        target = _target_device(func, args, kwargs)
        if func is torch.Tensor.cpu or (target == HOST and on_device and func is torch.Tensor.to):
            if on_device:
                _sync("to host")
            return _unwrap(func(*args, **kwargs))
        result = func(*args, **kwargs)
        if target == STANDIN or (on_device and target is None):
            return _wrap(result)
        return result

    @staticmethod
    def _check(func, args: tuple, tensors: list[torch.Tensor], on_device: list[torch.Tensor]) -> None:
        if func in _TO_NUMPY:
            raise TypeError("can't convert cuda:0 device type tensor to numpy (the CPU stand-in for cuda:0). "
                            "Use Tensor.cpu() to copy the tensor to host memory first.")
        if (kind := _SCALAR_READS.get(func) or _DATA_DEPENDENT.get(func)) is not None:
            _sync(kind)
            return
        if func is torch.Tensor.__getitem__:
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            if not _is_device(args[0]) and any(_is_device(i) and i.dim() > 0 for i in index):
                raise RuntimeError("indices should be either on cpu or on the same device as the indexed tensor "
                                   "(cpu); got indices on cuda:0 (the CPU stand-in)")
            if any(isinstance(i, torch.Tensor) and _is_device(i) and i.dtype == torch.bool for i in index):
                _sync("boolean mask")
            return
        if func in _CONVOLUTIONS and len(args) >= 2 and args[0].dim() == 4 and _State.syncs is not None:
            # input and weight in different layouts: on CUDA one of them is converted on every call
            # (either way round: a channels-last input into a module left contiguous, or an NCHW
            # activation, such as ShuffleNetV2's after its channel shuffle, into channels-last weights)
            given, weight = _activation_layout(args[0]), _weight_layout(args[1])
            if {given, weight} == {"channels-last", "contiguous"}:
                _State.syncs.layout_mismatches.append(f"conv2d: {given} input, {weight} weight at {_caller()}")
        if func in _MIXING_ALLOWED or type(func).__name__ == "method-wrapper":  # attribute get/set: no compute
            return
        # a 0-dim host tensor is a CPU scalar to elementwise kernels, but joining kernels take tensors
        # as they are: CUDA's stack and cat refuse one among device tensors
        joining = func in _JOINING
        host = [t for t in tensors if not _is_device(t) and (joining or t.dim() > 0)]
        if host:
            name = getattr(func, "__name__", str(func))
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                               f"cuda:0 (the CPU stand-in) and cpu! ({name} got a host tensor of shape "
                               f"{tuple(host[0].shape)})")


def _activation_layout(tensor: torch.Tensor) -> str:
    """How an input's elements lie in memory: `channels-last`, `contiguous`, `either` (both orders are
    one, as for 1x1 maps: nothing to convert) or `strided` (a slice)."""
    last, first = tensor.is_contiguous(memory_format=torch.channels_last), tensor.is_contiguous()
    return "either" if last and first else "channels-last" if last else "contiguous" if first else "strided"


def _weight_layout(tensor: torch.Tensor) -> str:
    """The layout a weight's strides announce, which is what PyTorch's convolutions follow: a 1x1 or
    depthwise kernel lies alike in both orders, yet `.to(channels_last)` gives it channels-last strides,
    and CUDA then converts an NCHW input to channels-last on every call."""
    _n, c, h, w = tensor.shape
    contiguous, channels_last, strides = (c * h * w, h * w, w, 1), (h * w * c, 1, w * c, c), tuple(tensor.stride())
    if channels_last == contiguous:
        return "either"
    return "channels-last" if strides == channels_last else "contiguous" if strides == contiguous else "strided"


def _sync(kind: str) -> None:
    if _State.syncs is not None:
        _State.syncs.record(kind, _State.in_step and not _State.allowed)


def activate() -> torch.device:
    """Switch this process onto the stand-in (for the rest of its life unless `standin()` scopes it)."""
    if _State.mode is None:
        _State.mode = StandInMode()
        _State.mode.__enter__()
    return STANDIN


@contextmanager
def standin() -> Iterator[torch.device]:
    """The stand-in for the duration of a block (tests): yields its device."""
    outer = _State.mode
    if outer is None:
        activate()
    try:
        yield STANDIN
    finally:
        if outer is None and _State.mode is not None:
            _State.mode.__exit__(None, None, None)
            _State.mode = None


def adopt(module: nn.Module) -> nn.Module:
    """Make a module's parameters and buffers device tensors (`nn.Module.to` keeps their Python
    objects, so it cannot): every placement of a module onto the stand-in goes through here."""
    swapped: dict[int, nn.Parameter] = {}
    for child in module.modules():
        for name, param in child._parameters.items():
            if param is not None and not _is_device(param):
                if id(param) not in swapped:
                    swapped[id(param)] = nn.Parameter(param.detach().as_subclass(DeviceTensor), param.requires_grad)
                child._parameters[name] = swapped[id(param)]
        for name, buffer in child._buffers.items():
            if buffer is not None and not _is_device(buffer):
                child._buffers[name] = buffer.as_subclass(DeviceTensor)
    return module


@contextmanager
def checking_host_syncs(device: torch.device) -> Iterator[HostSyncs]:
    """Count host syncs (the stand-in), and make one inside a step loop an error on CUDA."""
    previous = _State.syncs
    _State.syncs = HostSyncs()
    try:
        yield _State.syncs
    finally:
        _State.syncs = previous


def _debug_mode(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error" if _State.in_step and not _State.allowed else "default")


@contextmanager
def _rules(device: torch.device, **flags: bool) -> Iterator[None]:
    """Set the step-loop flags for a block, and CUDA's sync debug mode to match them."""
    before = {name: getattr(_State, name) for name in flags}
    for name, value in flags.items():
        setattr(_State, name, value)
    _debug_mode(device)
    try:
        yield
    finally:
        for name, value in before.items():
            setattr(_State, name, value)
        _debug_mode(device)


def step_loop(device: torch.device):
    """The engine's step loop: no host sync may happen inside it (except under `allowed_sync`)."""
    return _rules(device, in_step=True) if _State.syncs is not None else nullcontext()


def allowed_sync(device: torch.device):
    """A sync the step loop makes on purpose (the periodic non-finite check)."""
    return _rules(device, allowed=True) if _State.syncs is not None else nullcontext()


def count_step(device: torch.device) -> None:
    if _State.syncs is not None:
        _State.syncs.steps += 1
