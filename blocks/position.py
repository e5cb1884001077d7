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
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.block import Block, TensorOp
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.resample import ResampleError, resample_grid_table
from vitgraph.shapes import Image, TensorType, Tokens, expect_grid, expect_tokens


def add_table(x: torch.Tensor, table: torch.Tensor, *, skip: int) -> torch.Tensor:
    """Add ``table`` to the tokens after the first ``skip`` (prefix) ones."""
    if skip == 0:
        return x + table
    return torch.cat([x[:, :skip], x[:, skip:] + table], dim=1)


@torch.fx.wrap
def resample_table(
    table: torch.Tensor,
    image: torch.Tensor,
    grid: tuple[int, int],
    stride: tuple[int, int],
    prefix: int,
    pad: bool = False,
) -> torch.Tensor:
    """The (1, prefix + rows*cols, D) table made for ``grid``, resized to the grid of
    ``image`` (its sides over the patch ``stride``, as the patch convolution's output,
    rounded up when the embedding ``pad``s the image to a patch multiple):
    bicubic with antialiasing and the prefix rows kept, as timm's ``_pos_embed`` calls
    ``resample_abs_pos_embed`` under ``dynamic_img_size``. Free of branches on sizes, so
    a symbolic trace (torchvision's feature extraction) keeps the size dynamic."""
    if not pad:
        _check_divides(image, stride)
    up = (stride[0] - 1, stride[1] - 1) if pad else (0, 0)  # a partial patch counts
    rows = (image.shape[-2] + up[0]) // stride[0]  # as the patch convolution's output
    cols = (image.shape[-1] + up[1]) // stride[1]
    dim = table.shape[-1]
    head, body = table[:, :prefix], table[:, prefix:]
    body = body.float().reshape(1, grid[0], grid[1], dim).permute(0, 3, 1, 2)
    body = F.interpolate(body, size=(rows, cols), mode="bicubic", antialias=True)
    body = body.permute(0, 2, 3, 1).reshape(1, -1, dim).to(table.dtype)
    return torch.cat([head, body], dim=1)


def _check_divides(image: torch.Tensor, stride: tuple[int, int]) -> None:
    """timm's unpadded dynamic ``PatchEmbed`` refuses a side the patch does not divide;
    so do we, rather than floor it as the convolution would. Checked where sizes are
    plain ints (eager); a symbolic trace keeps no check, as timm's ``_assert`` is lost."""
    height, width = image.shape[-2], image.shape[-1]
    if isinstance(height, int) and isinstance(width, int):
        if height % stride[0] or width % stride[1]:
            raise ValueError(
                f"an input of {height}x{width} is not a whole number of {stride[0]}x"
                f"{stride[1]} patches: resize it to a multiple, or build with "
                "dynamic_img_pad=True (the embedding then pads it)"
            )


def add_dynamic_table(
    x: torch.Tensor,
    image: torch.Tensor,
    table: torch.Tensor,
    *,
    skip: int,
    grid: tuple[int, int],
    stride: tuple[int, int],
    prefix: int,
    pad: bool = False,
) -> torch.Tensor:
    """``add_table`` with the table resized to the image's grid (``resample_table``)."""
    return add_table(x, resample_table(table, image, grid, stride, prefix, pad), skip=skip)


@register
class LearnedPosition(Block):
    """A learned table added to every token (prefix tokens included unless
    ``include_prefix: false``, timm's ``no_embed_class``)."""

    kind: Literal["learned_pos"] = "learned_pos"
    role = "position"
    arity = None  # the tokens, and the image when dynamic (checked in infer)
    include_prefix: bool = True
    """The table also covers the class/distillation tokens (ViT, DeiT)."""
    init_std: Annotated[float, Field(ge=0)] = 0.02
    """Std of the truncated-normal init; 0 starts the table at zeros (CeiT's layer table)."""
    dynamic: bool = False
    """Resize the table on the fly to the grid of the image given as second input
    (``inputs: [<tokens>, input]``): timm's ``dynamic_img_size``. The types keep the
    declared size; any other size the patch divides runs the same weights."""
    dynamic_pad: bool = False
    """With ``dynamic``: the patch embedding pads the image to a patch multiple (its
    ``dynamic_pad``), so the grid of an input counts its partial patches."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        if self.dynamic_pad and not self.dynamic:
            raise ShapeError(
                "dynamic_pad rounds the grid of each input up; the table is only resized "
                "per input with dynamic: true",
                field="dynamic_pad",
                hint="set dynamic: true with the image as second input",
            )
        if not self.dynamic:
            if len(inputs) > 1:
                raise ShapeError(
                    f"{self.kind} takes one input (the tokens), got {len(inputs)}",
                    hint="a second input (the image) is read only with dynamic: true",
                )
            return self, tokens
        image = inputs[1] if len(inputs) > 1 else None
        if not isinstance(image, Image) or len(inputs) != 2:
            raise ShapeError(
                f"a dynamic {self.kind} reads the grid off the image it was made from, "
                f"but its second input is {image if image is not None else 'missing'}",
                field="dynamic",
                hint="list the image as its second input: inputs: [<tokens>, input]",
            )
        grid = expect_grid(tokens, self.kind)
        if image.height % grid[0] or image.width % grid[1]:
            raise ShapeError(
                f"the {grid[0]}x{grid[1]} grid is not a patch grid of the "
                f"{image.height}x{image.width} image it names",
                field="dynamic",
                hint="name the image the patch embedding read",
            )
        return self, tokens

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
        if self.dynamic:
            image = inputs[1]
            assert isinstance(image, Image) and tokens.grid is not None
            stride = (image.height // tokens.grid[0], image.width // tokens.grid[1])
            kwargs = {
                "skip": skip,
                "grid": tokens.grid,
                "stride": stride,
                "prefix": length - tokens.patches,
                "pad": self.dynamic_pad,
            }
            return TensorOp(table, add_dynamic_table, kwargs=kwargs)
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
