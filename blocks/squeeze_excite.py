"""Squeeze-and-excitation (Hu et al., arXiv:1709.01507 §3): each channel of a feature map
is rescaled by a gate in (0, 1) computed from the map's global average through a
bottleneck of two 1×1 convs (C → C·ratio → C, with biases).

Used inside BoTNet-S1's bottlenecks (``bot_bottleneck`` with ``se``, SE-ResNet placement:
on the block's output, before the residual sum) and available as a kind of its own.
Module names follow timm's ``SEModule`` (``fc1``, ``fc2``).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, expect_image
from vitgraph.vocabulary import Activation, activation


def se_width(channels: int, ratio: float) -> int:
    """Hidden width of the gate: ``channels * ratio`` (SE-Net's C/r), at least 1."""
    return max(1, round(channels * ratio))


class SqueezeExcite(nn.Module):
    """x · sigmoid(fc2(act(fc1(mean_hw(x)))))."""

    def __init__(self, channels: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = activation(act)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * gate.sigmoid()


@register
class SqueezeExciteBlock(Block):
    """Channel gating of a feature map by squeeze-and-excitation (shape unchanged)."""

    kind: Literal["squeeze_excite"] = "squeeze_excite"
    weight_init = "bn_zero_last"  # timm byobnet._init_weights: its SE convs ~ N(0, sqrt(2/fan_out))
    role = "conv"
    ratio: Annotated[float, Field(gt=0, le=1)] = 1 / 16
    """Hidden width as a fraction of the channels (SE-Net's 1/r; r = 16 in the paper)."""
    act: Activation = "relu"
    """Activation between the two 1×1 convs."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        if image.channels * self.ratio < 1:
            raise ShapeError(
                f"ratio {self.ratio} of {image.channels} channels leaves no hidden unit",
                field="ratio",
                hint="use a ratio ≥ 1/channels",
            )
        return self, image

    def build(self, *inputs: TensorType) -> nn.Module:
        channels = expect_image(inputs[0], self.kind).channels
        return SqueezeExcite(channels, se_width(channels, self.ratio), self.act)
