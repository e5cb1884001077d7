"""Local self-attention of the Image Transformer (Parmar et al., ICML 2018, §3.2): the
sequence split into query blocks, each attending to a memory around it, masked so a
position sees the ones generated before it only. 1-D: blocks of the raster sequence over
the previous block; 2-D: rectangles with flanges above, left and right, generated in the
raster order of the blocks. Helpers shared with blocks/image_transformer.py: the grid
cells of a generation order, the tiling check, the prefix padding, and ``Ordered``: the
tokens' type that carries the generation order from the embedding to every kind that
places positions, so a hand-written spec whose orders disagree is a located error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.blocks._attention_common import AttentionParams, merge_heads, split_fused
from vitgraph.errors import ShapeError
from vitgraph.layers import Incremental
from vitgraph.registry import register
from vitgraph.shapes import Ids, TensorType, Tokens, expect_tokens
from vitgraph.vocabulary import PosInt

Pair = Annotated[list[PosInt], Field(min_length=2, max_length=2)]
Flange = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]


@dataclass(frozen=True)
class Ordered(Tokens):
    """Tokens whose sequence order the embedding set: ``order`` None is raster order, a
    pair (qh, qw) the raster order of qh x qw blocks, raster inside each (§3.2). Kinds
    that keep their input's type pass it on; plain ``Tokens`` is an order nobody stated,
    and nobody checks it."""

    order: tuple[int, int] | None = None

    def __str__(self) -> str:
        blocks = "raster order" if self.order is None else "in {}x{} blocks".format(*self.order)
        return f"{super().__str__()}, {blocks}"


def _order(order: tuple[int, int] | list[int] | None) -> str:
    return "raster order" if order is None else "{}x{} blocks".format(*order)


def same_order(
    tokens: Tokens, blocks: list[int] | None, field: str | None, kind: str, what: str
) -> None:
    """ShapeError when ``tokens`` carry a generation order other than ``blocks`` — the
    positions, the shift or the attention's causal mask would read another order than
    the one the ids come in (``field`` None: the kind reads raster order only)."""
    if not isinstance(tokens, Ordered):
        return
    have = None if tokens.order is None else list(tokens.order)
    if have == (None if blocks is None else list(blocks)):
        return
    if field is None:
        hint = "give intensity_embed, block_shift and timing_signal_2d no blocks"
    else:
        hint = (
            f"give {field}: {'null' if have is None else have}, or the same blocks to "
            "intensity_embed, block_shift, timing_signal_2d and local_attention_2d's "
            "query_shape"
        )
    raise ShapeError(
        f"{kind} {what} {_order(blocks)}, but the tokens come in {_order(have)} (set by "
        "the embedding's blocks): the model would generate in one order and "
        f"{'attend' if field == 'query_shape' else 'place positions'} in another",
        field=field,
        hint=hint,
    )


def _divisors(n: int, near: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0 and d <= 2 * near)


def tiles(grid: tuple[int, int], shape: list[int] | None, field: str, kind: str) -> None:
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


def grid_of(tokens: Tokens | Ids, kind: str) -> tuple[int, int]:
    if tokens.grid is None:
        raise ShapeError(
            f"{kind} places positions on the image's grid, but receives {tokens} without one",
            hint="give the input a grid: input: {ids: N, vocab: V, grid: [rows, cols]}",
        )
    return tokens.grid


def fill(x: torch.Tensor, length: int) -> tuple[torch.Tensor, int]:
    """A prefix (``vitgraph sample --no-cache`` feeds those) padded to the whole length;
    the kinds here are causal, so what stands after the prefix changes none of it. (No
    branch on the length: the module stays symbolically traceable.)"""
    n = x.shape[1]
    return F.pad(x, [0, 0] * (x.ndim - 2) + [0, length - n]), n


class _LocalAttention(AttentionParams):
    """The shared part of the two local kinds: bias-free q, k, v and output projections
    (t2t's ``multihead_attention``), each query block over its own memory."""

    weight_init = "uniform_fan_avg_0.2"  # t2t's model initializer; q, k, v three kernels
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
        tiles(grid_of(tokens, self.kind), self.query_shape, "query_shape", self.kind)
        same_order(tokens, self.query_shape, "query_shape", self.kind, "attends in")
        return self.resolve(tokens), tokens

    def memory(self, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        rows, cols = grid_of(tokens, self.kind)
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
    #: t2t holds q, k and v as three kernels (the initializer's fans are each one's)
    stacked: ClassVar[dict[str, int]] = {"qkv.weight": 3}

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
        x, n = fill(x, self.length)
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
        """New positions over the cached keys and values, masked as the blocks are; keys
        before the chunk's first visible one are skipped, so a token costs its memory's
        work, not the prefix's."""
        assert self.cache is not None
        q, k, v = split_fused(self.qkv(x), 3, self.heads)
        if not self.cache:
            dense = self.dense_mask()
            first = dense.to(torch.uint8).argmax(1)  # each query's first visible key
            self.cache[:] = [k[:, :, :0], v[:, :, :0], dense.to(x.device), first]
        past, end = self.cache[0].shape[2], self.cache[0].shape[2] + q.shape[2]
        k = torch.cat([self.cache[0], k], dim=2)
        v = torch.cat([self.cache[1], v], dim=2)
        self.cache[:2] = [k, v]
        low = int(self.cache[3][past:end].min()) if end > past else past
        mask = self.cache[2][past:end, low:end]
        out = F.scaled_dot_product_attention(
            q, k[:, :, low:], v[:, :, low:], attn_mask=mask, scale=self.scale
        )
        return self.proj_drop(self.proj(merge_heads(out)))
