"""Moving between token sequences and feature maps, for pyramids whose next stage
tokenizes the previous stage's output again (PVT arXiv:2102.12122 §3.1, Fig. 3)."""

from __future__ import annotations

from typing import Literal, Self

import torch
from torch import nn

from vitgraph.block import Block
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import Image, TensorType, Tokens, expect_grid, expect_tokens


@register
class TokensToImage(Block):
    """Lay the patch tokens ``(N, C)`` out on their grid as a ``C×H×W`` feature map."""

    kind: Literal["tokens_to_image"] = "tokens_to_image"
    role = "structural"

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        rows, cols = expect_grid(tokens, self.kind)
        if tokens.prefix:
            raise ShapeError(
                f"tokens_to_image takes patch tokens only, but receives {tokens}",
                hint="move the class token to a later stage, or drop it first",
            )
        return self, Image(tokens.dim, rows, cols)

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and tokens.grid is not None
        return TokenGrid(tokens.grid)


class TokenGrid(nn.Module):
    def __init__(self, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).unflatten(2, self.grid)  # (B, C, H, W)
