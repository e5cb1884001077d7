"""The Image Transformer (Parmar et al., ICML 2018, arXiv:1802.05751): every sub-pixel is a
token (§3.1: a per-channel intensity embedding, channels laid along the width, a 2-D
timing signal), decoded autoregressively by local self-attention (§3.2, in
blocks/local_attention.py), with a 256-way categorical output or a discretized mixture of
logistics (§3.3, blocks/dmol.py); the class-conditional model's class embedding (§4).

Generation order: raster order (1-D), or for 2-D local attention the raster order of the
query rectangles, raster order inside each (§3.2). Kinds that place positions take
``blocks`` (the query shape) for the 2-D order; ids come in the generation order.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.blocks.local_attention import Ordered, Pair, cells, fill, grid_of, same_order, tiles
from vitgraph.errors import ShapeError
from vitgraph.layers import ChunkPositions, Incremental
from vitgraph.registry import register
from vitgraph.shapes import Ids, TensorType, Tokens, expect_ids, expect_tokens
from vitgraph.vocabulary import PosInt

# -- input --------------------------------------------------------------------------------


@register
class IntensityEmbed(Block):
    """Sub-pixel intensities as tokens (§3.1): channel c with intensity v reads row
    c·vocab + v of a (channels·vocab) x dim table, times √dim (t2t
    ``get_channel_embeddings``); the grid's width holds the channels side by side."""

    kind: Literal["intensity_embed"] = "intensity_embed"
    role = "tokenizer"
    # t2t's get_channel_embeddings gives the table no initializer of its own: the model's
    # uniform_unit_scaling at gain 0.2 (image_transformer_base) draws it
    weight_init = "uniform_fan_avg_0.2"
    dim: PosInt
    """Token width."""
    channels: PosInt = 3
    """Colour channels, interleaved along the width (R, G, B of a pixel side by side)."""
    blocks: Pair | None = None
    """The 2-D generation order's query shape (null: raster order)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        ids = expect_ids(inputs[0], self.kind)
        rows, cols = grid_of(ids, self.kind)
        if cols % self.channels:
            raise ShapeError(
                f"the grid is {cols} sub-pixels wide, not a whole number of pixels of "
                f"{self.channels} channels",
                field="channels",
                hint=f"the width holds pixels x channels: grid [{rows}, "
                f"{cols // self.channels * self.channels or self.channels}]",
            )
        tiles((rows, cols), self.blocks, "blocks", self.kind)
        order = None if self.blocks is None else (self.blocks[0], self.blocks[1])
        return self, Ordered(self.dim, (rows, cols), order=order)

    def build(self, *inputs: TensorType) -> nn.Module:
        ids = expect_ids(inputs[0], self.kind)
        grid = grid_of(ids, self.kind)
        row, col = cells(grid, self.blocks)
        embed = ChannelEmbedding(ids.vocab, self.channels, self.dim, col % self.channels)
        if self.blocks is not None:  # pictures of samples: each cell's sequence position
            embed.order = torch.empty_like(row)
            embed.order[row * grid[1] + col] = torch.arange(len(row))
        return embed


class ChannelEmbedding(nn.Module, ChunkPositions):
    offset: torch.Tensor

    def __init__(self, vocab: int, channels: int, dim: int, channel: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels * vocab, dim).normal_(std=dim**-0.5))
        self.register_buffer("offset", channel * vocab, persistent=False)
        self.scale, self.channels = dim**0.5, channels
        self.order: torch.Tensor | None = None  # the 2-D generation order (cell -> position)

    def picture_layout(self) -> dict:
        """For ``vitgraph.sampling.to_images``: pixels of ``channels`` sub-pixels."""
        return {"channels": self.channels, "order": self.order}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = ids + self.read(self.offset, ids.shape[1])
        return F.embedding(rows, self.weight) * self.scale


@register
class PixelEmbed(Block):
    """A pixel's sub-pixels as one token (the DMOL model, §3.3: it predicts whole pixels):
    intensities scaled to [-1, 1], a 1x3 stride-3 convolution over the sub-pixels to the
    width and a ReLU (t2t ``image_channel_compress_bottom``)."""

    kind: Literal["pixel_embed"] = "pixel_embed"
    role = "tokenizer"
    weight_init = "uniform_fan_avg_0.2"  # t2t's model initializer, the conv's fans
    dim: PosInt
    """Token width."""
    channels: PosInt = 3
    """Colour channels, interleaved along the width."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        ids = expect_ids(inputs[0], self.kind)
        rows, cols = grid_of(ids, self.kind)
        if cols % self.channels:
            raise ShapeError(
                f"the grid is {cols} sub-pixels wide, not a whole number of pixels of "
                f"{self.channels} channels",
                field="channels",
            )
        return self, Ordered(self.dim, (rows, cols // self.channels))  # raster order

    def build(self, *inputs: TensorType) -> nn.Module:
        ids = expect_ids(inputs[0], self.kind)
        return PixelLinear(ids.length, ids.vocab, self.channels, self.dim)


class PixelLinear(nn.Module):
    def __init__(self, length: int, vocab: int, channels: int, dim: int) -> None:
        super().__init__()
        self.length, self.middle, self.channels = length, (vocab - 1) / 2, channels
        self.proj = nn.Conv1d(1, dim, channels, stride=channels)

    def picture_layout(self) -> dict:
        return {"channels": self.channels}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids, _ = fill(ids, self.length)
        sub_pixels = ids[:, None].float() / self.middle - 1  # (B, 1, N·C)
        return F.relu(self.proj(sub_pixels)).transpose(1, 2)


@register
class BlockShift(Block):
    """The decoder input shift (t2t ``shift_right_3d``): a zero first, every token one
    place later, the last dropped, so position i has seen positions before i only. With
    ``blocks`` it restarts in every query block (t2t ``right_shift_blockwise``, its 2-D
    models' shift: a block's last token then reaches no position)."""

    kind: Literal["block_shift"] = "block_shift"
    role = "token"
    objective = "next_token"  # an autoregressive model: position i predicts id i
    blocks: Pair | None = None
    """Restart the shift in every query block of this shape, in the 2-D generation order
    (null: one shift over the sequence)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        if self.blocks is not None:
            tiles(grid_of(tokens, self.kind), self.blocks, "blocks", self.kind)
            same_order(tokens, self.blocks, "blocks", self.kind, "restarts its shift in")
        return self, tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        run = self.blocks[0] * self.blocks[1] if self.blocks else tokens.length
        return ZeroShift(tokens.length, run)


class ZeroShift(nn.Module, Incremental):
    def __init__(self, length: int, run: int) -> None:
        super().__init__()
        self.length, self.run = length, run
        self.seen: torch.Tensor | None = None  # decoding: every input so far
        self.emitted = 0
        self.on = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.on:
            return self._continue(x)
        x, n = fill(x, self.length)
        runs = x.unflatten(1, (-1, self.run))  # (B, blocks, run, D)
        shifted = F.pad(runs, (0, 0, 1, 0))[:, :, :-1]
        return shifted.flatten(1, 2)[:, :n]

    def _continue(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x if self.seen is None else torch.cat([self.seen, x], dim=1)
        # the first call also emits position 0 (a zero), so the last output always
        # predicts the next id
        end = min(self.seen.shape[1] + 1, self.length)
        whole = torch.cat([x.new_zeros(x.shape[0], 1, x.shape[2]), self.seen], 1)[:, :end]
        starts = torch.arange(end, device=x.device) % self.run == 0
        whole = whole.masked_fill(starts[None, :, None], 0.0)
        out, self.emitted = whole[:, self.emitted :], end
        return out

    def decoding(self, on: bool) -> None:
        self.on, self.seen, self.emitted = on, None, 0


@register
class TimingSignal2d(Block):
    """The 2-D timing signal (§3.1; t2t ``add_timing_signal_nd``): sines and cosines of
    the row in the first half of the width, of the column (pixel x channel) in the
    second, at geometric timescales from 1 to 10^4, added to the tokens."""

    kind: Literal["timing_signal_2d"] = "timing_signal_2d"
    role = "position"
    blocks: Pair | None = None
    """The 2-D generation order's query shape (null: raster order)."""
    max_timescale: Annotated[float, Field(gt=1)] = 1.0e4
    """Longest timescale."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        tiles(grid_of(tokens, self.kind), self.blocks, "blocks", self.kind)
        same_order(tokens, self.blocks, "blocks", self.kind, "places its signal in")
        if tokens.dim < 4:
            raise ShapeError(f"the timing signal needs a width of 4 or more, not {tokens.dim}")
        return self, tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        grid = grid_of(tokens, self.kind)
        return TimingAdd(timing_signal(grid, tokens.dim, self.blocks, self.max_timescale))


def timing_signal(
    grid: tuple[int, int], dim: int, blocks: list[int] | None = None, longest: float = 1e4
) -> torch.Tensor:
    """(N, dim): t2t's ``add_timing_signal_nd`` for two dims, in the sequence's order."""
    scales = dim // 4
    inv = torch.exp(torch.arange(scales) * -(math.log(longest) / max(scales - 1, 1)))
    signal = torch.zeros(grid[0] * grid[1], dim)
    for axis, position in enumerate(cells(grid, blocks)):
        angle = position[:, None].float() * inv[None]
        signal[:, 2 * scales * axis : 2 * scales * (axis + 1)] = torch.cat(
            [angle.sin(), angle.cos()], dim=1
        )
    return signal


class TimingAdd(nn.Module, ChunkPositions):
    signal: torch.Tensor

    def __init__(self, signal: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("signal", signal, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.read(self.signal, x.shape[1]).to(x.dtype)


@register
class AxisPositions(Block):
    """Learned positions, one table per axis of the grid (t2t ``add_positional_embedding_nd``,
    the DMOL config's ``pos: emb``): the token at row r, column c gets rows[r] + cols[c],
    each table drawn N(0, dim^-1/2) and read times √dim. t2t allocates ``max_length``
    rows per axis and reads the first rows/cols of them; ``length`` reproduces that."""

    kind: Literal["axis_pos"] = "axis_pos"
    role = "position"
    weight_init = "keep"  # build draws N(0, dim^-1/2): unit variance after the √dim
    length: PosInt | None = None
    """Rows of each table (null: that axis's size; t2t's image hparams: 3075)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        rows, cols = grid_of(tokens, self.kind)
        same_order(tokens, None, None, self.kind, "places its tables in")
        if self.length is not None and self.length < max(rows, cols):
            raise ShapeError(
                f"the grid is {rows}x{cols} but each position table has {self.length} rows",
                field="length",
                hint=f"set length: {max(rows, cols)} or more (or null: the grid's sides)",
            )
        return self, tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        rows, cols = grid_of(tokens, self.kind)
        return AxisTables((rows, cols), tokens.dim, self.length)


class AxisTables(nn.Module, ChunkPositions):
    def __init__(self, grid: tuple[int, int], dim: int, length: int | None) -> None:
        super().__init__()
        self.grid, self.scale = grid, dim**0.5
        self.rows = nn.Parameter(torch.empty(length or grid[0], dim).normal_(std=dim**-0.5))
        self.cols = nn.Parameter(torch.empty(length or grid[1], dim).normal_(std=dim**-0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = self.grid
        table = self.rows[:rows, None] + self.cols[None, :cols]  # (rows, cols, D)
        return x + self.read(table.flatten(0, 1) * self.scale, x.shape[1]).to(x.dtype)


# -- class-conditional generation ---------------------------------------------------------
# The graph has one input, so the class-conditional model reads the class as id 0 before
# the sub-pixels: ids (B, 1 + N) in, logits (B, 1 + N, V) out. Row 0 is a learned prior
# over the classes (the joint model p(class) p(image | class), so the convention holds:
# position t sees ids before t only); `vitgraph sample` with a one-id prefix draws images
# of that class.


@register
class ClassFirst(Block):
    """The sub-pixel ids of a class-conditional input: id 0 (the class) dropped, the rest
    laid out on ``grid``."""

    kind: Literal["class_first"] = "class_first"
    role = "structural"
    classes: PosInt
    """Number of classes (id 0 is one of them)."""
    grid: Pair
    """[rows, cols] of the sub-pixels after the class."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        ids = expect_ids(inputs[0], self.kind)
        rows, cols = self.grid
        if ids.length != 1 + rows * cols:
            raise ShapeError(
                f"a class and a {rows}x{cols} grid are {1 + rows * cols} ids, but the input "
                f"has {ids.length}",
                field="grid",
                hint=f"give input.ids {1 + rows * cols}",
            )
        if ids.vocab < self.classes:
            raise ShapeError(f"{self.classes} classes do not fit {ids.vocab} ids", field="classes")
        return self, Ids(rows * cols, ids.vocab, (rows, cols))

    def build(self, *inputs: TensorType) -> nn.Module:
        return DropFirst((self.grid[0], self.grid[1]))


class DropFirst(nn.Module):
    def __init__(self, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = grid

    def picture_layout(self) -> dict:
        return {"skip": 1, "grid": self.grid}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return ids[:, 1:]


@register
class ClassEmbed(Block):
    """The class embedding added to every decoder input position (§4, class-conditional
    generation; t2t adds it after the shift and the positions). Inputs: the tokens and
    the ids whose id 0 is the class."""

    kind: Literal["class_embed"] = "class_embed"
    role = "token"
    weight_init = "keep"  # build draws N(0, dim^-1/2), as the intensity table
    arity = 2
    classes: PosInt
    """Number of classes."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        expect_ids(inputs[1], self.kind)
        return self, tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        return ClassTable(self.classes, tokens.dim)


class ClassTable(nn.Module):
    def __init__(self, classes: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, dim).normal_(std=dim**-0.5))

    def forward(self, tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        # an id past the classes wraps (example inputs draw ids over all 256 intensities;
        # the prior row never samples one)
        return tokens + F.embedding(ids[:, :1] % self.weight.shape[0], self.weight)


@register
class ClassPrior(Block):
    """Row 0 of a class-conditional model's logits: a learned prior over the classes
    (ids from ``classes`` on get logit -100: together below 1e-41 of the probability, and
    finite, so exports compare closely), before the sub-pixels' rows."""

    kind: Literal["class_prior"] = "class_prior"
    role = "head"
    weight_init = "keep"  # zeros: a uniform prior until trained
    classes: PosInt
    """Number of classes."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        logits = expect_tokens(inputs[0], self.kind)
        if logits.dim < self.classes:
            raise ShapeError(
                f"{self.classes} classes do not fit {logits.dim} logits", field="classes"
            )
        return self, Tokens(logits.dim, None, count=1 + logits.length)

    def build(self, *inputs: TensorType) -> nn.Module:
        logits = expect_tokens(inputs[0], self.kind)
        return PriorRow(self.classes, logits.dim)


class PriorRow(nn.Module):
    never: torch.Tensor

    def __init__(self, classes: int, vocab: int) -> None:
        super().__init__()
        self.prior = nn.Parameter(torch.zeros(classes))
        self.register_buffer("never", torch.full((vocab - classes,), -100.0), persistent=False)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        row = torch.cat([self.prior, self.never]).to(logits.dtype)
        return torch.cat([row.expand(logits.shape[0], 1, -1), logits], dim=1)
