"""Position encodings added to the tokens.

Learned absolute table (ViT §3.1, covering the class token too), and the fixed 2-D
sin-cos table of SimpleViT (arXiv:2205.01580 §2, after MoCo v3 arXiv:2104.02057):
``[sin x, cos x, sin y, cos y]`` with ω_i = 1 / 10000^(i / (D/4 − 1)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block, TensorOp
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.resample import ResampleError, resample_grid_table
from vitgraph.shapes import TensorType, Tokens, expect_grid, expect_tokens


def add_table(x: torch.Tensor, table: torch.Tensor, *, skip: int) -> torch.Tensor:
    """Add ``table`` to the tokens after the first ``skip`` (prefix) ones."""
    if skip == 0:
        return x + table
    return torch.cat([x[:, :skip], x[:, skip:] + table], dim=1)


@register
class LearnedPosition(Block):
    """A learned table added to every token (prefix tokens included unless
    ``include_prefix: false``, timm's ``no_embed_class``)."""

    kind: Literal["learned_pos"] = "learned_pos"
    role = "position"
    include_prefix: bool = True
    """The table also covers the class/distillation tokens (ViT, DeiT)."""
    init_std: Annotated[float, Field(ge=0)] = 0.02
    """Std of the truncated-normal init; 0 starts the table at zeros (CeiT's layer table)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        return self, expect_tokens(inputs[0], self.kind)

    def build(self, *inputs: TensorType) -> TensorOp:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens)
        length = tokens.length if self.include_prefix else tokens.patches
        table = nn.Parameter(torch.empty(1, length, tokens.dim))
        if self.init_std:
            nn.init.trunc_normal_(table, std=self.init_std)
        else:
            nn.init.zeros_(table)
        skip = 0 if self.include_prefix else tokens.prefix
        return TensorOp(table, add_table, kwargs={"skip": skip})

    def resample(
        self,
        inputs: Sequence[TensorType],
        name: str,
        table: torch.Tensor,
        target: tuple[int, ...],
        *,
        antialias: bool = True,
        was: Sequence[TensorType] | None = None,
    ) -> torch.Tensor | None:
        """A table of another grid, resized bicubically as timm's
        ``resample_abs_pos_embed`` (prefix rows kept)."""
        tokens = inputs[0]
        if not isinstance(tokens, Tokens) or table.ndim != 3:
            return None
        prefix = tokens.prefix if self.include_prefix else 0
        old = was[0] if was else None
        old_grid = old.grid if isinstance(old, Tokens) else None
        grid = tokens.grid
        if grid is None:  # patch tokens that lost their grid type (TNT's word projection)
            side = math.isqrt(target[1] - prefix)
            if side * side != target[1] - prefix:
                return None
            grid = (side, side)
        try:
            out = resample_grid_table(table, grid, old_grid, prefix, antialias)
        except ResampleError:  # not a square grid of patches: another model's table
            return None
        return out if tuple(out.shape) == target else None


def sincos_2d(rows: int, cols: int, dim: int, temperature: float) -> torch.Tensor:
    """(rows*cols, dim) table ``[sin x, cos x, sin y, cos y]`` (MoCo v3 / big_vision)."""
    y, x = torch.meshgrid(
        torch.arange(rows, dtype=torch.float64),
        torch.arange(cols, dtype=torch.float64),
        indexing="ij",
    )
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / (quarter - 1))
    x = x.flatten()[:, None] * omega[None, :]
    y = y.flatten()[:, None] * omega[None, :]
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1).float()


@register
class SinCos2dPosition(Block):
    """The fixed 2-D sin-cos table of SimpleViT, added to the patch tokens only."""

    kind: Literal["sincos2d_pos"] = "sincos2d_pos"
    role = "position"
    temperature: float = 10000.0
    """Base of the frequencies."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        expect_grid(tokens, self.kind)
        if tokens.dim % 4 or tokens.dim < 8:
            raise ShapeError(
                f"the 2-D sin-cos table needs a width divisible by 4 and at least "
                f"8, but the tokens are {tokens.dim} wide"
            )
        return self, tokens

    def build(self, *inputs: TensorType) -> TensorOp:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and tokens.grid is not None
        table = sincos_2d(*tokens.grid, tokens.dim, self.temperature)[None]
        return TensorOp(table, add_table, persistent=False, kwargs={"skip": tokens.prefix})
