"""The rest of DeepViT (arXiv:2103.11886; official code zhoudaquan/dvit_repo):

* ``deepvit_stem``: the official ``PatchEmbed_CNN`` of DeepViT-S/L, "following T2T" —
  a 7×7 stride-2 conv and a 3×3 conv (64 channels, BatchNorm + ReLU, no bias), then a
  strided projection of kernel patch/2, so each token still covers patch×patch pixels;
* ``residual_scale`` (in structural.py): the official ``scale_adjustment`` divides each residual
  branch by a
  constant (0.5 in DeepViT-S/L; the branch's LayerNorm input is multiplied by it, which
  ``deepvit_layer`` folds into the LayerNorm's epsilon: LN(a·x; ε) = LN(x; ε/a²)).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.errors import ShapeError
from vitgraph.registry import Block, register
from vitgraph.shapes import TensorType, Tokens, conv_out, expect_image

PosInt = Annotated[int, Field(gt=0)]


@register
class DeepVitStem(Block):
    """Two-conv stem (BatchNorm + ReLU) and a strided projection to tokens."""

    kind: Literal["deepvit_stem"] = "deepvit_stem"
    family = "tokenizer"
    weight_init = "keep"  # DeepViT code: PatchEmbed_CNN at PyTorch's defaults
    patch: PosInt
    """Pixels per token side; the stem halves the image, the projection takes patch/2."""
    dim: PosInt
    """Token width."""
    width: PosInt = 64
    """Channels of the two stem convolutions."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        if self.patch % 2:
            raise ShapeError(f"patch {self.patch} must be even: the stem halves the image",
                             field="patch")
        half = self.patch // 2
        rows = conv_out(conv_out(image.height, 7, 2, 3), half, half, 0)
        cols = conv_out(conv_out(image.width, 7, 2, 3), half, half, 0)
        if rows <= 0 or cols <= 0:
            raise ShapeError(f"patch {self.patch} leaves no token of the {image.height}x"
                             f"{image.width} image", field="patch")
        return self, Tokens(self.dim, (rows, cols))

    def build(self, *inputs: TensorType) -> nn.Module:
        image = expect_image(inputs[0], self.kind)
        return ConvStem(image.channels, self.width, self.dim, self.patch // 2)


class ConvStem(nn.Module):
    """Submodule names as the official ``PatchEmbed_CNN`` (conv1, bn1, conv2, bn2, proj)."""

    def __init__(self, channels: int, width: int, dim: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.proj = nn.Conv2d(width, dim, kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, width, H/2, W/2)
        x = self.relu(self.bn2(self.conv2(x)))
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, rows*cols, dim)

