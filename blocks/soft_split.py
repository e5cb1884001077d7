"""T2T-ViT's soft split (Yuan et al., arXiv:2101.11986 §3.1, Eq. 3-4).

Overlapping k×k patches of the image, or of the tokens re-structured onto their 2-D grid,
are unfolded (``nn.Unfold``) and each becomes one token of width ``channels·k·k``: the
tokens-to-token step that models local structure and shortens the sequence.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.block import Block, FunctionOp
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import Image, TensorType, Tokens, conv_out
from vitgraph.vocabulary import PosInt


def unfold_image(x: torch.Tensor, *, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, rows*cols, C·k·k)."""
    return F.unfold(x, kernel, padding=padding, stride=stride).transpose(1, 2)


def unfold_tokens(
    x: torch.Tensor, *, grid: tuple[int, int], kernel: int, stride: int, padding: int
) -> torch.Tensor:
    """(B, N, D) on ``grid`` -> re-structure to (B, D, rows, cols), then unfold."""
    x = x.transpose(1, 2).unflatten(2, grid)
    return F.unfold(x, kernel, padding=padding, stride=stride).transpose(1, 2)


@register
class SoftSplit(Block):
    """Unfold overlapping patches of an image or of a token grid into tokens."""

    kind: Literal["soft_split"] = "soft_split"
    role = "tokenizer"
    weight_init = "trunc_normal_linear"  # T2T-ViT code: _init_weights
    kernel: PosInt
    """Patch side."""
    stride: PosInt
    """Step between patches (the grid shrinks by this factor)."""
    padding: Annotated[int, Field(ge=0)] = 0
    """Zero padding of the map."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = inputs[0]
        if isinstance(x, Image):
            channels, rows, cols = x.channels, x.height, x.width
        elif isinstance(x, Tokens) and x.grid is not None and x.prefix == 0:
            channels, (rows, cols) = x.dim, x.grid
        elif isinstance(x, Tokens):
            raise ShapeError(
                f"soft_split re-structures patch tokens onto their grid, but receives {x}"
                + (
                    f" ({x.prefix} prefix token(s) have no place on the grid)"
                    if x.prefix
                    else " (no grid)"
                ),
                hint="soft-split before adding class tokens",
            )
        else:
            raise ShapeError(f"soft_split takes an image or tokens on a grid, but receives {x}")
        if self.padding >= self.kernel:
            raise ShapeError(
                f"padding {self.padding} must be smaller than kernel {self.kernel}", field="padding"
            )
        out = (
            conv_out(rows, self.kernel, self.stride, self.padding),
            conv_out(cols, self.kernel, self.stride, self.padding),
        )
        if min(out) <= 0:
            raise ShapeError(
                f"kernel {self.kernel} does not fit the {rows}x{cols} map it unfolds "
                f"(padded to {rows + 2 * self.padding}x{cols + 2 * self.padding})",
                field="kernel",
                hint="use a smaller kernel or more padding, or a larger input",
            )
        return self, Tokens(channels * self.kernel * self.kernel, out)

    def build(self, *inputs: TensorType) -> FunctionOp:
        x = inputs[0]
        geometry = {"kernel": self.kernel, "stride": self.stride, "padding": self.padding}
        if isinstance(x, Image):
            return FunctionOp(unfold_image, geometry)
        assert isinstance(x, Tokens) and x.grid is not None
        return FunctionOp(unfold_tokens, {"grid": x.grid, **geometry})


@register
class TokenLinear(Block):
    """A linear map of every token to width ``dim`` (T2T-ViT's final ``project``)."""

    kind: Literal["token_linear"] = "token_linear"
    role = "tokenizer"
    weight_init = "trunc_normal_linear"  # T2T-ViT code: _init_weights
    dim: PosInt
    """Output width."""
    bias: bool = True
    """Bias of the map."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = inputs[0]
        if not isinstance(x, Tokens):
            raise ShapeError(f"token_linear takes tokens, but receives {x}")
        return self, Tokens(self.dim, x.grid, x.prefix, x.count)

    def build(self, *inputs: TensorType) -> nn.Module:
        x = inputs[0]
        assert isinstance(x, Tokens)
        return nn.Linear(x.dim, self.dim, bias=self.bias)
