"""Layout changes between stages of pyramid models (PVT arXiv:2102.12122 §3.1, Fig. 3;
Twins arXiv:2104.13840 §3): patch tokens on a grid become a feature map again, so the
next stage's patch embedding can convolve them."""

from __future__ import annotations

from typing import Literal, Self

import torch
from torch import nn

from vitgraph.block import Block, FunctionOp
from vitgraph.errors import ShapeError
from vitgraph.registry import deprecated_alias, register
from vitgraph.shapes import Image, TensorType, Tokens, expect_grid


def tokens_to_image(x: torch.Tensor, *, grid: tuple[int, int]) -> torch.Tensor:
    return x.transpose(1, 2).unflatten(2, grid)  # (B, N, C) -> (B, C, rows, cols)


@register
class ToImage(Block):
    """Lay patch tokens ``(N, C)`` out on their grid as a ``C×rows×cols`` feature map; an
    image passes unchanged (so a stage may start from the input image or from the previous
    stage's tokens)."""

    kind: Literal["to_image"] = "to_image"
    role = "structural"

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = inputs[0]
        if isinstance(x, Image):
            return self, x
        if not isinstance(x, Tokens):
            raise ShapeError(f"to_image takes tokens on a grid or an image, but receives {x}")
        rows, cols = expect_grid(x, self.kind)
        if x.prefix:
            raise ShapeError(
                f"to_image cannot place the {x.prefix} prefix token(s) of {x} on the grid",
                hint="move the class token to a later stage, or drop it first",
            )
        return self, Image(x.dim, rows, cols)

    def build(self, *inputs: TensorType) -> FunctionOp | nn.Identity:
        x = inputs[0]
        if isinstance(x, Image):
            return nn.Identity()
        assert isinstance(x, Tokens) and x.grid is not None
        return FunctionOp(tokens_to_image, {"grid": x.grid})


deprecated_alias(
    "tokens_to_image",
    "to_image",
    "the same layout change, which also passes an image through unchanged",
)


def image_to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)  # (B, C, rows, cols) -> (B, rows * cols, C)


@register
class ToTokens(Block):
    """A ``C×rows×cols`` feature map as ``rows·cols`` tokens of width C on its grid, in
    raster order (DETR's encoder reads the projected C5 map so, §3.2)."""

    kind: Literal["to_tokens"] = "to_tokens"
    role = "structural"

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = inputs[0]
        if isinstance(x, Tokens) and x.grid is not None:
            return self, x
        if not isinstance(x, Image):
            raise ShapeError(f"to_tokens takes an image or tokens on a grid, but receives {x}")
        return self, Tokens(x.channels, (x.height, x.width))

    def build(self, *inputs: TensorType) -> FunctionOp | nn.Identity:
        if isinstance(inputs[0], Tokens):
            return nn.Identity()
        return FunctionOp(image_to_tokens, {})
