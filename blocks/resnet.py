"""ResNet building blocks (He et al., arXiv:1512.03385 §3-4, Table 1), torchvision layout.

The stem (7×7/2 conv, BatchNorm, ReLU, 3×3/2 max-pool), the basic block (two 3×3 convs)
and the bottleneck block (1×1, 3×3, 1×1 with 4× expansion; the stride sits on the 3×3,
"ResNet v1.5"), each with a 1×1 projection shortcut when the stride or width changes
(the global average pool is ``global_avg_pool``, in pooling.py). Submodule names follow
torchvision (conv1, bn1, ..., downsample) so its state_dicts load as they are. VT
(arXiv:2006.03677) and BoTNet build on them.
"""

from __future__ import annotations

from typing import Any, Literal, Self

import torch
from torch import nn

from vitgraph.block import Block, Fold, batchnorm_pairs
from vitgraph.blocks._frozen_bn import FrozenBatchNorm2d
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import Image, TensorType, conv_out, expect_image
from vitgraph.vocabulary import PosInt


@register
class ResNetStem(Block):
    """7×7 stride-2 conv (no bias), BatchNorm, ReLU, 3×3 stride-2 max-pool: /4."""

    kind: Literal["resnet_stem"] = "resnet_stem"
    role = "conv"
    weight_init = "kaiming_fan_out"  # torchvision ResNet
    dim: PosInt = 64
    """Output channels."""
    norm: Literal["batch", "frozen"] = "batch"
    """``frozen``: BatchNorm whose weight, bias and statistics are buffers (DETR §A.3)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        rows, cols = (conv_out(conv_out(s, 7, 2, 3), 3, 2, 1) for s in (image.height, image.width))
        if min(rows, cols) <= 0:
            raise ShapeError(
                f"the {image.height}x{image.width} image is too small for the stem's /4 reduction"
            )
        return self, Image(self.dim, rows, cols)

    def build(self, *inputs: TensorType) -> nn.Module:
        return Stem(expect_image(inputs[0], self.kind).channels, self.dim, self.norm == "frozen")

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        return [] if self.norm == "frozen" else batchnorm_pairs(module, ("bn1", "conv1"))


class _Residual(Block):
    role = "conv"
    dim: PosInt
    """Output channels."""
    stride: PosInt = 1
    """Stride of the block (on its 3×3 conv, and on the projection shortcut)."""
    dilation: PosInt = 1
    """Dilation of the 3×3 conv (padding = dilation): DETR-DC5's last stage trades its
    stride for dilation 2 in every block but the first (torchvision's
    ``replace_stride_with_dilation``)."""
    norm: Literal["batch", "frozen"] = "batch"
    """``frozen``: BatchNorm whose weight, bias and statistics are buffers (DETR §A.3)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        d = self.dilation
        rows, cols = (conv_out(s, 3, self.stride, d, d) for s in (image.height, image.width))
        return self, Image(self.dim, rows, cols)

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        """Each conv's BatchNorm (the projection shortcut's too) folds into the conv."""
        if self.norm == "frozen":
            return []
        pairs = [(f"bn{i}", f"conv{i}") for i in (1, 2, 3)] + [("downsample.1", "downsample.0")]
        return batchnorm_pairs(module, *pairs)


@register
class BasicBlock(_Residual):
    """Two 3×3 convs with BatchNorm, plus the (projected) input, then ReLU."""

    kind: Literal["basic_block"] = "basic_block"
    weight_init = "kaiming_fan_out"  # torchvision ResNet

    def build(self, *inputs: TensorType) -> nn.Module:
        channels = expect_image(inputs[0], self.kind).channels
        frozen = self.norm == "frozen"
        return Basic(channels, self.dim, self.stride, self.dilation, frozen)


@register
class BottleneckBlock(_Residual):
    """1×1 reduce, 3×3 (strided), 1×1 expand, each with BatchNorm, plus the (projected)
    input, then ReLU."""

    kind: Literal["bottleneck"] = "bottleneck"
    weight_init = "kaiming_fan_out"  # torchvision ResNet
    width: PosInt | None = None
    """Channels of the inner 3×3 conv; default: dim / 4 (the expansion of He et al.)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        resolved, out = super().infer(*inputs)
        if self.width is None and self.dim % 4:
            raise ShapeError(
                f"dim {self.dim} is not a multiple of the expansion 4",
                field="dim",
                hint="set width explicitly",
            )
        return resolved.model_copy(update={"width": self.width or self.dim // 4}), out

    def build(self, *inputs: TensorType) -> nn.Module:
        assert self.width is not None
        channels = expect_image(inputs[0], self.kind).channels
        frozen = self.norm == "frozen"
        return Bottleneck(channels, self.width, self.dim, self.stride, self.dilation, frozen)


def _conv_bn(
    c_in: int, c_out: int, kernel: int, stride: int, dilation: int = 1, frozen: bool = False
) -> tuple[nn.Conv2d, nn.Module]:
    pad = dilation * (kernel // 2)
    conv = nn.Conv2d(c_in, c_out, kernel, stride, pad, dilation=dilation, bias=False)
    return conv, FrozenBatchNorm2d(c_out) if frozen else nn.BatchNorm2d(c_out)


def _shortcut(c_in: int, c_out: int, stride: int, frozen: bool = False) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(*_conv_bn(c_in, c_out, 1, stride, frozen=frozen))


class Stem(nn.Module):
    def __init__(self, channels: int, dim: int, frozen: bool = False) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(channels, dim, 7, 2, frozen=frozen)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class Basic(nn.Module):
    def __init__(
        self, c_in: int, c_out: int, stride: int, dilation: int = 1, frozen: bool = False
    ) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(c_in, c_out, 3, stride, dilation, frozen)
        self.conv2, self.bn2 = _conv_bn(c_out, c_out, 3, 1, dilation, frozen)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, c_out, stride, frozen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    def __init__(
        self,
        c_in: int,
        width: int,
        c_out: int,
        stride: int,
        dilation: int = 1,
        frozen: bool = False,
    ) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(c_in, width, 1, 1, frozen=frozen)
        self.conv2, self.bn2 = _conv_bn(width, width, 3, stride, dilation, frozen)
        self.conv3, self.bn3 = _conv_bn(width, c_out, 1, 1, frozen=frozen)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, c_out, stride, frozen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))
