"""PiT's pooling layer (Heo et al., arXiv:2103.16302 §3.2, Fig. 1c).

Between stages, the patch tokens are reshaped to their 2-D grid and pooled by a
depthwise strided convolution (kernel stride + 1, padding stride // 2, groups = input
channels) that also widens them; the class/distillation tokens, which have no place on the
grid, go through a linear layer to the same width. Submodules ``conv`` and ``fc`` as in
the official code and timm.
"""

from __future__ import annotations

from typing import Literal, Self

import torch
from torch import nn

from vitgraph.block import Block
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, conv_out, expect_grid, expect_tokens
from vitgraph.vocabulary import PosInt


@register
class PitPool(Block):
    """Depthwise strided conv on the patch grid, linear on the prefix tokens."""

    kind: Literal["pit_pool"] = "pit_pool"
    role = "pooling"
    weight_init = "keep"  # timm PiT re-draws only LayerNorms
    dim: PosInt | None = None
    """Output width (a multiple of the input width); default: twice the input's (§3.2)."""
    stride: PosInt = 2
    """Spatial reduction; the kernel is stride + 1 and the padding stride // 2."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        rows, cols = expect_grid(tokens, self.kind)
        dim = self.dim or 2 * tokens.dim
        if dim % tokens.dim:
            raise ShapeError(
                f"dim {dim} must be a multiple of the {tokens.dim}-wide tokens it receives "
                f"(a depthwise conv with {tokens.dim} groups)",
                field="dim",
                hint=f"use dim {2 * tokens.dim} (PiT doubles the width), or omit it",
            )
        if min(rows, cols) < self.stride:
            raise ShapeError(
                f"stride {self.stride} is larger than the {rows}x{cols} grid it pools",
                field="stride",
                hint="use a smaller stride, or a larger input",
            )
        kernel, padding = self.stride + 1, self.stride // 2
        grid = (
            conv_out(rows, kernel, self.stride, padding),
            conv_out(cols, kernel, self.stride, padding),
        )
        return (
            self.model_copy(update={"dim": dim}),
            Tokens(dim, grid, tokens.prefix, tokens.count),
        )

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and tokens.grid is not None and self.dim
        return Pooling(tokens.dim, self.dim, self.stride, tokens.grid, tokens.prefix)


class Pooling(nn.Module):
    def __init__(self, dim: int, out: int, stride: int, grid: tuple[int, int], prefix: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, out, stride + 1, stride, stride // 2, groups=dim)
        self.fc = nn.Linear(dim, out)
        self.grid, self.prefix = grid, prefix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prefix, patches = x[:, : self.prefix], x[:, self.prefix :]  # (B, P, D), (B, N, D)
        feat = patches.transpose(1, 2).unflatten(2, self.grid)  # (B, D, rows, cols)
        patches = self.conv(feat).flatten(2).transpose(1, 2)  # (B, N / stride², out)
        return torch.cat([self.fc(prefix), patches], dim=1)
