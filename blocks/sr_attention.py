"""Spatial-reduction attention (PVT arXiv:2102.12122 §3.3, "SRA"; Twins arXiv:2104.13840
§3.2 "global sub-sampled attention", GSA): every token queries, but keys and values come
from the grid sub-sampled by a strided convolution (kernel = stride = ``sr_ratio``) and a
LayerNorm, so the cost drops by sr_ratio². With ``sr_ratio: 1`` there is no convolution
and it is plain attention with separate q and kv projections (PVT's and Twins' names).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.blocks._attention_common import AttentionParams
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, expect_grid, expect_tokens
from vitgraph.vocabulary import PosInt


@register
class SpatialReductionAttention(AttentionParams):
    """Attention whose keys/values come from the grid sub-sampled by a strided conv + norm."""

    kind: Literal["sr_attention"] = "sr_attention"
    weight_init = "conv_fan_out"  # timm Twins._init_weights
    sr_ratio: PosInt = 1
    """Sub-sampling factor of the key/value grid (PVT and Twins: 8, 4, 2, 1 by stage)."""
    norm_eps: Annotated[float, Field(gt=0)] = 1e-5
    """Epsilon of the LayerNorm after the sub-sampling conv."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        if self.sr_ratio > 1:
            rows, cols = expect_grid(tokens, self.kind)
            if tokens.prefix:
                raise ShapeError(
                    f"sr_attention with sr_ratio {self.sr_ratio} cannot sub-sample "
                    f"the {tokens.prefix} prefix token(s) of {tokens}",
                    field="sr_ratio",
                    hint="use sr_ratio 1 where a class token is",
                )
            if self.sr_ratio > min(rows, cols):
                raise ShapeError(
                    f"sr_ratio {self.sr_ratio} is larger than the {rows}x{cols} grid it receives",
                    field="sr_ratio",
                    hint=f"use an sr_ratio from 1 to {min(rows, cols)}",
                )
        return self.resolve(tokens), tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and self.dim and self.head_dim
        return SubsampledAttention(
            self.dim,
            self.heads,
            self.head_dim,
            tokens.grid,
            self.sr_ratio,
            self.norm_eps,
            self.qkv_bias,
            self.proj_bias,
            self.attn_drop,
            self.proj_drop,
        )


class SubsampledAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        grid: tuple[int, int] | None,
        sr_ratio: int,
        eps: float,
        qkv_bias: bool,
        proj_bias: bool,
        attn_drop: float,
        proj_drop: float,
    ) -> None:
        super().__init__()
        self.heads, self.head_dim, self.grid = heads, head_dim, grid
        self.scale = head_dim**-0.5
        self.attn_drop = attn_drop
        inner = heads * head_dim
        self.q = nn.Linear(dim, inner, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * inner, bias=qkv_bias)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=eps)
        else:
            self.sr = nn.Identity()
            self.norm = nn.Identity()
        self.subsample = sr_ratio > 1
        self.proj = nn.Linear(inner, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q(x).unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)  # (B, H, N, d)
        if self.subsample:
            assert self.grid is not None
            image = x.transpose(1, 2).unflatten(2, self.grid)  # (B, C, rows, cols)
            x = self.norm(self.sr(image).flatten(2).transpose(1, 2))  # (B, N / sr², C)
        kv = self.kv(x).unflatten(-1, (2, self.heads, self.head_dim))  # (B, M, 2, H, d)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, M, d)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).flatten(2)))
