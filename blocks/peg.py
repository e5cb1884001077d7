"""Positional encoding generator (CPVT, Chu et al., arXiv:2102.10882 §3.2).

A depthwise k×k convolution (with bias, zero padding) over the patch tokens laid out on
their 2-D grid, added back to them: the zero padding at the borders lets each token infer
its absolute position. Prefix tokens (class, distillation) bypass it. Twins reuses it
(timm's ``PosConv``), so the conv sits at ``proj.0`` as in timm and the official code.
"""

from __future__ import annotations

from typing import Literal, Self

import torch
from torch import nn

from vitgraph.block import Block
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, expect_grid, expect_tokens
from vitgraph.vocabulary import PosInt


@register
class PositionalEncodingGenerator(Block):
    """PEG: ``tokens + depthwise_conv(tokens on the grid)``; prefix tokens pass unchanged."""

    kind: Literal["peg"] = "peg"
    role = "position"
    weight_init = "keep"  # CPVT = DeiT init (conv default); the Twins spec overrides
    kernel: PosInt = 3
    """Side of the depthwise kernel (odd, so the grid keeps its size)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        if tokens.grid is None:
            raise ShapeError(
                f"peg needs patch tokens laid out on a 2-D grid, but receives {tokens} "
                f"({tokens.patches} patch tokens with no rows x cols layout)",
                hint="place the peg where the tokens still come from a patch grid",
            )
        expect_grid(tokens, self.kind)
        if self.kernel % 2 == 0:
            rows, cols = tokens.grid
            raise ShapeError(
                f"kernel {self.kernel} must be odd: with padding {self.kernel // 2} it would "
                f"turn the {rows}x{cols} grid into {rows + 1}x{cols + 1}",
                field="kernel",
                hint="use kernel 3 (CPVT) or another odd size",
            )
        return self, tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and tokens.grid is not None
        return PosConv(tokens.dim, self.kernel, tokens.grid, tokens.prefix)


class PosConv(nn.Module):
    def __init__(self, dim: int, kernel: int, grid: tuple[int, int], prefix: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(dim, dim, kernel, 1, kernel // 2, bias=True, groups=dim)
        )
        self.grid, self.prefix = grid, prefix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prefix, patches = x[:, : self.prefix], x[:, self.prefix :]  # (B, P, D), (B, N, D)
        feat = patches.transpose(1, 2).unflatten(2, self.grid)  # (B, D, rows, cols)
        mixed = self.proj(feat)
        mixed += feat  # in place: the convolution's output is not needed for its backward
        patches = mixed.flatten(2).transpose(1, 2)
        if self.prefix == 0:
            return patches
        return torch.cat([prefix, patches], dim=1)
