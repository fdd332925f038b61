"""ResNet34, MobileNetV2 and ShuffleNetV2 from torchvision, first convolution sized to the band
count, trained from scratch (the paper's setup).

Every backbone returns `tokens` (B, N, 512) from its last stage, `pooled` (B, 512) and `logits`
(B, K): feature-based losses (RKD, VPR, CORAL) compare vectors of one size across architectures,
and the classifier reads the 512-d pooled vector. Two heads reach 512 where the last stage is
wider (options.heads):

- `projected` (this project's): torchvision's last stage (MobileNetV2: 1280, ShuffleNetV2: 1024),
  then a 1x1 convolution + BN + ReLU to 512;
- `reference` (the paper's code): MobileNetV2's last ConvBNReLU ends at 512 channels
  (`model/MobileNetV2.py:57, 81`); ShuffleNetV2 pools its 1024-wide conv5 and applies
  Linear(1024, 512) (`model/ShuffleNet.py:130-145`). Here that Linear is applied to every token
  (a 1x1 convolution with bias): pooling and a linear map commute, so the pooled vector is the
  reference's, and the Planner gets 512-wide tokens, which the reference cannot give it.

ShuffleNetV2 comes in torchvision's widths; the reference code uses x0.5 (its last stage is 1024
wide at every width), this project's `bench` profile x1.0 (options.shufflenet_width).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torchvision import models
from torchvision.ops.misc import Conv2dNormActivation

from ..errors import AckdError

FEATURE_DIM = 512


def _widen_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
        padding=conv.padding, bias=conv.bias is not None,
    )


HEADS = ("reference", "projected")


def _projection(width: int, heads: str) -> nn.Module:
    if width == FEATURE_DIM:
        return nn.Identity()
    if heads == "reference":  # the reference's Linear(width, 512) after pooling, applied per token
        return nn.Conv2d(width, FEATURE_DIM, 1, bias=True)
    return nn.Sequential(nn.Conv2d(width, FEATURE_DIM, 1, bias=False), nn.BatchNorm2d(FEATURE_DIM), nn.ReLU(inplace=True))


SHUFFLENET_WIDTHS = {0.5: models.shufflenet_v2_x0_5, 1.0: models.shufflenet_v2_x1_0,
                     1.5: models.shufflenet_v2_x1_5, 2.0: models.shufflenet_v2_x2_0}


def _resnet34(in_channels: int, width: float = 1.0, heads: str = "projected") -> tuple[nn.Module, int]:
    net = models.resnet34(weights=None)
    net.conv1 = _widen_first_conv(net.conv1, in_channels)
    body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return body, 512


def _mobilenetv2(in_channels: int, width: float = 1.0, heads: str = "projected") -> tuple[nn.Module, int]:
    net = models.mobilenet_v2(weights=None)
    net.features[0][0] = _widen_first_conv(net.features[0][0], in_channels)
    if heads == "reference":
        last = Conv2dNormActivation(net.features[-1][0].in_channels, FEATURE_DIM, kernel_size=1,
                                    activation_layer=nn.ReLU6)
        nn.init.kaiming_normal_(last[0].weight, mode="fan_out")  # torchvision's (and the reference's) init
        net.features[-1] = last
        return net.features, FEATURE_DIM
    return net.features, net.last_channel


def _shufflenetv2(in_channels: int, width: float = 1.0, heads: str = "projected") -> tuple[nn.Module, int]:
    net = SHUFFLENET_WIDTHS[width](weights=None)
    net.conv1[0] = _widen_first_conv(net.conv1[0], in_channels)
    body = nn.Sequential(net.conv1, net.maxpool, net.stage2, net.stage3, net.stage4, net.conv5)
    return body, net.conv5[0].out_channels


ARCHITECTURES: dict[str, Callable[[int, float, str], tuple[nn.Module, int]]] = {
    "resnet34": _resnet34,
    "mobilenetv2": _mobilenetv2,
    "shufflenetv2": _shufflenetv2,
}
SHORT_NAMES = {"R": "resnet34", "M": "mobilenetv2", "S": "shufflenetv2"}
CLASSIFIER_DROPOUT = {"resnet34": 0.0, "mobilenetv2": 0.2, "shufflenetv2": 0.0}  # as torchvision's heads
# The memory layout each architecture computes in on a device that prefers channels-last (CUDA):
# torchvision's ShuffleNetV2 makes its activations NCHW-contiguous in every unit's channel shuffle
# (`.transpose(1, 2).contiguous()`), so channels-last weights there would convert every activation
# on every convolution; it keeps NCHW weights and is fed NCHW.
COMPUTE_LAYOUT = {"resnet34": torch.channels_last, "mobilenetv2": torch.channels_last,
                  "shufflenetv2": torch.contiguous_format}


def canonical_arch(name: str) -> str:
    arch = SHORT_NAMES.get(name, name.lower())
    if arch not in ARCHITECTURES:
        known = ", ".join([*ARCHITECTURES, *SHORT_NAMES])
        raise AckdError(f"unknown architecture '{name}': expected one of {known}")
    return arch


def short_arch(name: str) -> str:
    arch = canonical_arch(name)
    return next(short for short, full in SHORT_NAMES.items() if full == arch)


def arch_width(arch: str, shufflenet_width: float) -> float:
    """The width multiplier a profile gives an architecture (only ShuffleNetV2 has a choice)."""
    return float(shufflenet_width) if canonical_arch(arch) == "shufflenetv2" else 1.0


def backbone_settings(arch: str, options: dict) -> dict[str, float | str]:
    """What a profile's options choose of a backbone, as its config and checkpoint record it."""
    return {"width": arch_width(arch, options["shufflenet_width"]), "heads": options["heads"]}


class Backbone(nn.Module):
    def __init__(self, arch: str, in_channels: int, num_classes: int, width: float = 1.0, heads: str = "projected"):
        super().__init__()
        self.arch = canonical_arch(arch)
        allowed = SHUFFLENET_WIDTHS if self.arch == "shufflenetv2" else (1.0,)
        if float(width) not in allowed:
            raise AckdError(f"{self.arch} width {width}: expected one of {', '.join(map(str, allowed))}")
        if heads not in HEADS:
            raise AckdError(f"backbone heads {heads!r}: expected one of {', '.join(HEADS)}")
        self.in_channels, self.num_classes, self.width, self.heads = in_channels, num_classes, float(width), heads
        # set by train.device.place_module on a channels-last device: the layout inputs are given in
        # (the caller's images may come in either: the matcher's pseudo-RGB is an index_select)
        self.input_layout: torch.memory_format | None = None
        self.body, width = ARCHITECTURES[self.arch](in_channels, float(width), heads)
        self.project = _projection(width, heads)
        dropout = CLASSIFIER_DROPOUT[self.arch]
        # num_classes 0: a feature extractor (SSM's encoders), with no head whose parameters DDP
        # would find unused
        self.classifier = None if num_classes == 0 else (
            nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURE_DIM, num_classes)) if dropout
            else nn.Linear(FEATURE_DIM, num_classes))

    @property
    def compute_layout(self) -> torch.memory_format:
        return COMPUTE_LAYOUT[self.arch]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.input_layout is not None:  # placed for a channels-last device: fed what it computes in
            x = x.contiguous(memory_format=self.input_layout)
        fmap = self.project(self.body(x))
        tokens = fmap.flatten(2).transpose(1, 2)
        pooled = tokens.mean(dim=1)
        if self.classifier is None:
            return {"tokens": tokens, "pooled": pooled}
        return {"tokens": tokens, "pooled": pooled, "logits": self.classifier(pooled)}


def build_backbone(arch: str, in_channels: int, num_classes: int, width: float = 1.0,
                   heads: str = "projected") -> Backbone:
    return Backbone(arch, in_channels, num_classes, width, heads)


def backbone_from_meta(meta: dict) -> Backbone:
    """The backbone a checkpoint's metadata describes (checkpoints older than `heads` have projected ones)."""
    return build_backbone(meta["arch"], meta["in_channels"], meta["num_classes"], meta.get("width", 1.0),
                          meta.get("heads", "projected"))
