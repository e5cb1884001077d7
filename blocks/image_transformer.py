"""The Image Transformer (Parmar et al., ICML 2018, arXiv:1802.05751): every sub-pixel is a
token (§3.1: a per-channel intensity embedding, channels laid along the width, a 2-D
timing signal), decoded autoregressively by local self-attention (§3.2: 1-D query blocks
over the previous block, or 2-D query rectangles with memory flanges), with a 256-way
categorical or a discretized mixture of logistics output (§3.3).

Generation order: raster order (1-D), or for 2-D local attention the raster order of the
query rectangles, raster order inside each (§3.2). Kinds that place positions take
``blocks`` (the query shape) for the 2-D order; ids come in the generation order.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.blocks._attention_common import AttentionParams, merge_heads, split_fused
from vitgraph.errors import ShapeError
from vitgraph.layers import Incremental
from vitgraph.registry import register
from vitgraph.shapes import Ids, TensorType, Tokens, expect_ids, expect_tokens
from vitgraph.vocabulary import PosInt

Pair = Annotated[list[PosInt], Field(min_length=2, max_length=2)]
Flange = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]


def _divisors(n: int, near: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0 and d <= 2 * near)


def _tiles(grid: tuple[int, int], shape: list[int] | None, field: str, kind: str) -> None:
    """ShapeError unless blocks of ``shape`` tile the ``grid`` exactly."""
    if shape is None:
        return
    (rows, cols), (qh, qw) = grid, shape
    if rows % qh or cols % qw:
        raise ShapeError(
            f"{kind}'s {'query blocks' if field == 'query_shape' else 'blocks (the 2-D order)'} "
            f"of {qh}x{qw} do not tile the {rows}x{cols} grid "
            f"({rows} rows / {qh} = {rows / qh:g}, {cols} columns / {qw} = {cols / qw:g})",
            field=field,
            hint=f"give [rows, cols] with rows from {_divisors(rows, qh)} and cols "
            f"from {_divisors(cols, qw)}",
        )


def cells(grid: tuple[int, int], blocks: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) on ``grid`` of every position of the sequence: raster order, or with
    ``blocks`` (qh, qw) the raster order of the blocks, raster order inside each (§3.2)."""
    rows, cols = grid
    p = torch.arange(rows * cols)
    if blocks is None:
        return p // cols, p % cols
    qh, qw = blocks
    block, inside = p // (qh * qw), p % (qh * qw)
    across = cols // qw
    return (block // across) * qh + inside // qw, (block % across) * qw + inside % qw


def _grid(tokens: Tokens | Ids, kind: str) -> tuple[int, int]:
    if tokens.grid is None:
        raise ShapeError(
            f"{kind} places positions on the image's grid, but receives {tokens} without one",
            hint="give the input a grid: input: {ids: N, vocab: V, grid: [rows, cols]}",
        )
    return tokens.grid


def _fill(x: torch.Tensor, length: int) -> tuple[torch.Tensor, int]:
    """A prefix (``vitgraph sample --no-cache`` feeds those) padded to the whole length;
    the kinds here are causal, so what stands after the prefix changes none of it. (No
    branch on the length: the module stays symbolically traceable.)"""
    n = x.shape[1]
    return F.pad(x, [0, 0] * (x.ndim - 2) + [0, length - n]), n


# -- input --------------------------------------------------------------------------------


@register
class IntensityEmbed(Block):
    """Sub-pixel intensities as tokens (§3.1): channel c with intensity v reads row
    c·vocab + v of a (channels·vocab) x dim table, times √dim (t2t
    ``get_channel_embeddings``); the grid's width holds the channels side by side."""

    kind: Literal["intensity_embed"] = "intensity_embed"
    role = "tokenizer"
    weight_init = "keep"  # build draws N(0, dim^-1/2): unit variance after the √dim
    dim: PosInt
    """Token width."""
    channels: PosInt = 3
    """Colour channels, interleaved along the width (R, G, B of a pixel side by side)."""
    blocks: Pair | None = None
    """The 2-D generation order's query shape (null: raster order)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        ids = expect_ids(inputs[0], self.kind)
        rows, cols = _grid(ids, self.kind)
        if cols % self.channels:
            raise ShapeError(
                f"the grid is {cols} sub-pixels wide, not a whole number of pixels of "
                f"{self.channels} channels",
                field="channels",
                hint=f"the width holds pixels x channels: grid [{rows}, "
                f"{cols // self.channels * self.channels or self.channels}]",
            )
        _tiles((rows, cols), self.blocks, "blocks", self.kind)
        return self, Tokens(self.dim, (rows, cols))

    def build(self, *inputs: TensorType) -> nn.Module:
        ids = expect_ids(inputs[0], self.kind)
        grid = _grid(ids, self.kind)
        row, col = cells(grid, self.blocks)
        embed = ChannelEmbedding(ids.vocab, self.channels, self.dim, col % self.channels)
        if self.blocks is not None:  # pictures of samples: each cell's sequence position
            embed.order = torch.empty_like(row)
            embed.order[row * grid[1] + col] = torch.arange(len(row))
        return embed


class ChannelEmbedding(nn.Module, Incremental):
    offset: torch.Tensor

    def __init__(self, vocab: int, channels: int, dim: int, channel: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels * vocab, dim).normal_(std=dim**-0.5))
        self.register_buffer("offset", channel * vocab, persistent=False)
        self.scale, self.channels = dim**0.5, channels
        self.order: torch.Tensor | None = None  # the 2-D generation order (cell -> position)
        self.position: int | None = None

    def picture_layout(self) -> dict:
        """For ``vitgraph.sampling.to_images``: pixels of ``channels`` sub-pixels."""
        return {"channels": self.channels, "order": self.order}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        start = self.position or 0
        rows = ids + torch.narrow(self.offset, 0, start, ids.shape[1])  # fx-traceable
        if self.position is not None:
            self.position += ids.shape[1]
        return F.embedding(rows, self.weight) * self.scale

    def decoding(self, on: bool) -> None:
        self.position = 0 if on else None


@register
class PixelEmbed(Block):
    """A pixel's sub-pixels as one token (the DMOL model, §3.3: it predicts whole pixels):
    intensities scaled to [-1, 1], a linear map of the channels to the width and a ReLU
    (t2t ``image_channel_compress_bottom``: a 1x3 stride-3 convolution)."""

    kind: Literal["pixel_embed"] = "pixel_embed"
    role = "tokenizer"
    weight_init = "keep"  # PyTorch's Linear default (t2t's initializer is not reproduced)
    dim: PosInt
    """Token width."""
    channels: PosInt = 3
    """Colour channels, interleaved along the width."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        ids = expect_ids(inputs[0], self.kind)
        rows, cols = _grid(ids, self.kind)
        if cols % self.channels:
            raise ShapeError(
                f"the grid is {cols} sub-pixels wide, not a whole number of pixels of "
                f"{self.channels} channels",
                field="channels",
            )
        return self, Tokens(self.dim, (rows, cols // self.channels))

    def build(self, *inputs: TensorType) -> nn.Module:
        ids = expect_ids(inputs[0], self.kind)
        return PixelLinear(ids.length, ids.vocab, self.channels, self.dim)


class PixelLinear(nn.Module):
    def __init__(self, length: int, vocab: int, channels: int, dim: int) -> None:
        super().__init__()
        self.length, self.middle, self.channels = length, (vocab - 1) / 2, channels
        self.proj = nn.Linear(channels, dim)

    def picture_layout(self) -> dict:
        return {"channels": self.channels}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids, _ = _fill(ids, self.length)
        pixels = ids.unflatten(1, (-1, self.channels)).float() / self.middle - 1
        return F.relu(self.proj(pixels))


@register
class BlockShift(Block):
    """The decoder input shift (t2t ``shift_right_3d``): a zero first, every token one
    place later, the last dropped, so position i has seen positions before i only. With
    ``blocks`` it restarts in every query block (t2t ``right_shift_blockwise``, 2-D: a
    block's last token then reaches no position; the shipped spec shifts once)."""

    kind: Literal["block_shift"] = "block_shift"
    role = "token"
    objective = "next_token"  # an autoregressive model: position i predicts id i
    blocks: Pair | None = None
    """Restart the shift in every query block of this shape, in the 2-D generation order
    (null: one shift over the sequence)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        if self.blocks is not None:
            _tiles(_grid(tokens, self.kind), self.blocks, "blocks", self.kind)
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
        x, n = _fill(x, self.length)
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
        _tiles(_grid(tokens, self.kind), self.blocks, "blocks", self.kind)
        if tokens.dim < 4:
            raise ShapeError(f"the timing signal needs a width of 4 or more, not {tokens.dim}")
        return self, tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        grid = _grid(tokens, self.kind)
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


class TimingAdd(nn.Module, Incremental):
    signal: torch.Tensor

    def __init__(self, signal: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("signal", signal, persistent=False)
        self.position: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = self.position or 0
        out = x + torch.narrow(self.signal, 0, start, x.shape[1]).to(x.dtype)
        if self.position is not None:
            self.position += x.shape[1]
        return out

    def decoding(self, on: bool) -> None:
        self.position = 0 if on else None


# -- local attention ------------------------------------------------------------------------


class _LocalAttention(AttentionParams):
    """The shared part of the two local kinds: bias-free q, k, v and output projections
    (t2t's ``multihead_attention``), each query block over its own memory."""

    weight_init = "keep"
    qkv_bias: bool = False
    proj_bias: bool = False
    causal: bool = True
    """Masked (decoder) local attention; the unmasked (encoder) form is not built."""
    computes_causal: ClassVar[bool] = True

    def _check_causal(self) -> None:
        if not self.causal:
            raise ShapeError(
                f"{self.kind} is the decoder's masked local attention; the unmasked form "
                "(t2t's encoder, super-resolution) is not built",
                field="causal",
                hint="remove causal: false",
            )

    def memory(self, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        assert self.dim is not None and self.head_dim is not None
        index, mask = self.memory(tokens)
        return LocalAttention(
            self.dim, self.heads, self.head_dim, self.qkv_bias, self.proj_bias,
            self.attn_drop, self.proj_drop, index, mask,
        )  # fmt: skip


@register
class LocalAttention1d(_LocalAttention):
    """1-D local attention (§3.2, t2t ``local_mask_right``): the raster sequence in query
    blocks of ``block_length``; each block attends to itself causally and to the whole
    previous block (the first block to itself only)."""

    kind: Literal["local_attention_1d"] = "local_attention_1d"
    block_length: PosInt = 256
    """Positions per query block (the memory adds the previous block's)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        self._check_causal()
        if tokens.length % self.block_length:
            n, block = tokens.length, self.block_length
            fit = [d for d in range(1, n + 1) if n % d == 0 and d <= 2 * block][-3:]
            raise ShapeError(
                f"{self.kind}'s query blocks of {block} do not tile the {n} positions "
                f"({n} / {block} = {n / block:g})",
                field="block_length",
                hint=f"give a block length that divides {n}: {', '.join(map(str, fit))}",
            )
        return self.resolve(tokens), tokens

    def memory(self, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        n, block = tokens.length, self.block_length
        blocks = n // block
        # memory of block b: positions (b-1)·L .. (b+1)·L - 1; before 0 is padding (index n)
        first = (torch.arange(blocks) - 1) * block
        index = first[:, None] + torch.arange(2 * block)[None]
        valid = index >= 0
        index = index.masked_fill(~valid, n)
        query = torch.arange(blocks)[:, None] * block + torch.arange(block)[None]
        mask = (index[:, None, :] <= query[:, :, None]) & valid[:, None, :]
        return index, mask


@register
class LocalAttention2d(_LocalAttention):
    """2-D local attention (§3.2, t2t ``masked_local_attention_2d``): query rectangles
    in raster order of blocks; each attends to its memory — the rectangle widened by
    ``memory_flange`` rows above and columns left and right — where the positions
    generated before it (every earlier block, earlier positions of its own) are seen.
    Memory cells outside the image are left out (t2t attends to their zero padding)."""

    kind: Literal["local_attention_2d"] = "local_attention_2d"
    query_shape: Pair = Field(default_factory=lambda: [8, 16])
    """Rows and columns of a query block (sub-pixel columns)."""
    memory_flange: Flange = Field(default_factory=lambda: [8, 16])
    """Memory rows above and columns on each side of a query block."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        self._check_causal()
        _tiles(_grid(tokens, self.kind), self.query_shape, "query_shape", self.kind)
        return self.resolve(tokens), tokens

    def memory(self, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        rows, cols = _grid(tokens, self.kind)
        (qh, qw), (fh, fw) = self.query_shape, self.memory_flange
        n, across = rows * cols, cols // qw
        blocks = n // (qh * qw)
        # the sequence position of every grid cell (the block order's inverse)
        where = torch.empty(n, dtype=torch.long)
        row, col = cells((rows, cols), self.query_shape)
        where[row * cols + col] = torch.arange(n)
        top = (torch.arange(blocks) // across) * qh - fh
        left = (torch.arange(blocks) % across) * qw - fw
        r = top[:, None, None] + torch.arange(qh + fh)[None, :, None]
        c = left[:, None, None] + torch.arange(qw + 2 * fw)[None, None, :]
        inside = (r >= 0) & (c >= 0) & (c < cols)  # r < rows always: the flange is above
        cell = r.clamp(min=0) * cols + c.clamp(0, cols - 1)
        index = where[cell].masked_fill(~inside, n).flatten(1)  # (blocks, M)
        valid = inside.flatten(1)
        query = torch.arange(n).view(blocks, qh * qw)
        mask = (index[:, None, :] <= query[:, :, None]) & valid[:, None, :]
        return index, mask


class LocalAttention(nn.Module, Incremental):
    """Attention of query blocks over gathered memories: blocks folded into the heads so
    SDPA stays 4-D (ONNX); ``index`` (blocks, M) names each memory's positions (n:
    padding), ``mask`` (blocks, Q, M) what each query sees."""

    index: torch.Tensor
    mask: torch.Tensor

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        qkv_bias: bool,
        proj_bias: bool,
        attn_drop: float,
        proj_drop: float,
        index: torch.Tensor,
        mask: torch.Tensor,
    ) -> None:
        super().__init__()
        self.heads, self.scale, self.attn_drop = heads, head_dim**-0.5, attn_drop
        self.blocks, self.queries, self.span = mask.shape
        self.length = self.blocks * self.queries
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(heads * head_dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()
        self.register_buffer("index", index.flatten(), persistent=False)
        self.register_buffer("mask", mask.repeat(heads, 1, 1)[None], persistent=False)
        self.cache: list[torch.Tensor] | None = None  # decoding: keys, values, dense mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cache is not None:
            return self._continue(x)
        x, n = _fill(x, self.length)
        q, k, v = split_fused(self.qkv(x), 3, self.heads)  # each (B, H, N, d)
        batch, heads, _, width = q.shape
        q = q.reshape(batch, heads * self.blocks, self.queries, width)
        k = F.pad(k, (0, 0, 0, 1))[:, :, self.index].reshape(batch, -1, self.span, width)
        v = F.pad(v, (0, 0, 0, 1))[:, :, self.index].reshape(batch, -1, self.span, width)
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=self.mask, dropout_p=drop, scale=self.scale
        )
        out = out.reshape(batch, heads, self.length, width)[:, :, :n]
        return self.proj_drop(self.proj(merge_heads(out)))

    def dense_mask(self) -> torch.Tensor:
        """(N, N) True where query i sees key j: the blocks' masks written densely."""
        dense = torch.zeros(self.length, self.length + 1, dtype=torch.bool)
        index = self.index.cpu().view(self.blocks, 1, self.span)
        query = torch.arange(self.length).view(self.blocks, self.queries, 1)
        dense[query, index] = self.mask[0, : self.blocks].cpu()
        return dense[:, :-1]

    def decoding(self, on: bool) -> None:
        self.cache = [] if on else None

    def _continue(self, x: torch.Tensor) -> torch.Tensor:
        """New positions over the cached keys and values, masked as the blocks are."""
        assert self.cache is not None
        q, k, v = split_fused(self.qkv(x), 3, self.heads)
        if not self.cache:
            self.cache[:] = [k[:, :, :0], v[:, :, :0], self.dense_mask().to(x.device)]
        past = self.cache[0].shape[2]
        k = torch.cat([self.cache[0], k], dim=2)
        v = torch.cat([self.cache[1], v], dim=2)
        self.cache[:2] = [k, v]
        mask = self.cache[2][past : past + q.shape[2], : past + q.shape[2]]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self.proj_drop(self.proj(merge_heads(out)))


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
