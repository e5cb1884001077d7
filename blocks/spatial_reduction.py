"""Spatial-reduction attention (PVT, arXiv:2102.12122 §3.3, Eq. 3-4): the keys and
values come from the token map shrunk by a strided convolution (kernel = stride = R)
and a LayerNorm, so attention costs N·N/R² instead of N², which lets the first stages
run on 1/4-scale maps."""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, expect_grid, expect_tokens
from vitgraph.vocabulary import DropRate, PosInt


@register
class SpatialReductionAttention(Block):
    """Multi-head attention whose keys/values are read from a ``sr_ratio``-times smaller
    map (strided conv + LayerNorm); ``sr_ratio: 1`` is plain attention with separate q and
    kv projections (PVT's last stage)."""

    kind: Literal["spatial_reduction_attention"] = "spatial_reduction_attention"
    role = "attention"
    weight_init = "trunc_normal_all"  # HF PvtPreTrainedModel._init_weights
    heads: PosInt
    """Number of heads."""
    sr_ratio: PosInt = 1
    """Reduction R: kernel and stride of the conv applied to the map before k/v."""
    head_dim: PosInt | None = None
    """Width of each head; default: dim / heads."""
    qkv_bias: bool = True
    """Bias in the q and kv projections."""
    attn_drop: DropRate = 0.0
    """Dropout on the attention weights."""
    proj_drop: DropRate = 0.0
    """Dropout after the output projection."""
    norm_eps: Annotated[float, Field(gt=0)] = 1e-6
    """Epsilon of the LayerNorm after the reduction (HF: 1e-6, official v1 code: 1e-5)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        if self.sr_ratio > 1:
            rows, cols = expect_grid(tokens, self.kind)
            if tokens.prefix:
                raise ShapeError(
                    f"sr_ratio {self.sr_ratio} reduces the token map, which has "
                    f"no place for the {tokens.prefix} prefix token(s) in {tokens}",
                    field="sr_ratio",
                    hint="PVT adds its class token in the last stage, where sr_ratio is 1",
                )
            for side in (rows, cols):
                if side % self.sr_ratio:
                    fits = [d for d in range(1, side + 1) if rows % d == 0 and cols % d == 0]
                    raise ShapeError(
                        f"sr_ratio {self.sr_ratio} must divide the {rows}x{cols} "
                        f"grid it receives ({side} leaves {side % self.sr_ratio})",
                        field="sr_ratio",
                        hint=f"use an sr_ratio from {fits}",
                    )
        head_dim = self.head_dim
        if head_dim is None:
            if tokens.dim % self.heads:
                raise ShapeError(
                    f"heads {self.heads} must divide the token width {tokens.dim}",
                    field="heads",
                    hint="set head_dim, or change heads",
                )
            head_dim = tokens.dim // self.heads
        return self.model_copy(update={"head_dim": head_dim}), tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and self.head_dim is not None
        return ReducedAttention(
            tokens.dim,
            tokens.grid,
            self.heads,
            self.head_dim,
            self.sr_ratio,
            self.qkv_bias,
            self.attn_drop,
            self.proj_drop,
            self.norm_eps,
        )


class ReducedAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        grid: tuple[int, int] | None,
        heads: int,
        head_dim: int,
        sr_ratio: int,
        qkv_bias: bool,
        attn_drop: float,
        proj_drop: float,
        eps: float,
    ) -> None:
        super().__init__()
        self.grid, self.heads, self.head_dim = grid, heads, head_dim
        self.attn_drop = attn_drop
        inner = heads * head_dim
        self.q = nn.Linear(dim, inner, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * inner, bias=qkv_bias)
        self.reduce = sr_ratio > 1
        if self.reduce:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=eps)
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q(x).unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)  # (B, H, N, d)
        source = x
        if self.reduce:
            source = x.transpose(1, 2).unflatten(2, self.grid)  # (B, C, rows, cols)
            source = self.norm(self.sr(source).flatten(2).transpose(1, 2))  # (B, N/R², C)
        kv = self.kv(source).unflatten(-1, (2, self.heads, self.head_dim))
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, M, d)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).flatten(2)))
