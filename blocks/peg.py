"""Positional encoding generator (CPVT arXiv:2102.10882 §3.2; Twins arXiv:2104.13840
§3.1 uses it after the first layer of each stage): a depthwise convolution with bias over
the patch grid, added to the tokens. Prefix tokens (the class token) bypass it.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.errors import ShapeError
from vitgraph.registry import Block, register
from vitgraph.shapes import TensorType, Tokens, expect_grid, expect_tokens


@register
class PositionalEncodingGenerator(Block):
    """x + depthwise_conv(x) on the patch grid (zero padding keeps the grid size)."""

    kind: Literal["peg"] = "peg"
    family = "position"
    kernel: Annotated[int, Field(gt=0)] = 3
    """Side of the depthwise kernel (odd, so the grid keeps its size)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        expect_grid(tokens, self.kind)
        if self.kernel % 2 == 0:
            raise ShapeError(f"kernel {self.kernel} must be odd to keep the grid size",
                             field="kernel", hint="use 3 (CPVT, Twins)")
        return self, tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and tokens.grid is not None
        return PEG(tokens.dim, self.kernel, tokens.grid, tokens.prefix)


class PEG(nn.Module):
    def __init__(self, dim: int, kernel: int, grid: tuple[int, int], prefix: int) -> None:
        super().__init__()
        self.grid, self.prefix = grid, prefix
        # a Sequential, so the keys read proj.0.weight as in the official CPVT/Twins code
        self.proj = nn.Sequential(nn.Conv2d(dim, dim, kernel, 1, kernel // 2, groups=dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prefix:
            prefix, x = x[:, : self.prefix], x[:, self.prefix :]
        image = x.transpose(1, 2).unflatten(2, self.grid)  # (B, C, rows, cols)
        x = x + self.proj(image).flatten(2).transpose(1, 2)
        if self.prefix:
            x = torch.cat([prefix, x], dim=1)
        return x
