"""Spatial-reduction attention (PVT arXiv:2102.12122 §3.3, Eq. 3-4, "SRA"; Twins
arXiv:2104.13840 §3.2 "global sub-sampled attention", GSA): every token queries, but keys
and values come from the grid sub-sampled by a strided convolution (kernel = stride =
``sr_ratio``) and a LayerNorm, so attention costs N·N/sr² instead of N². With
``sr_ratio: 1`` there is no convolution and it is plain attention with separate q and kv
projections (PVT's and Twins' names).

One kind for both families: PVT's layers ask for the HF reference's LayerNorm epsilon
(1e-6) and an ``sr_ratio`` that divides the grid (``exact_reduction``), and its spec draws
the weights as HF does (``init:``); the kind's own defaults are torch's epsilon and timm's
Twins init. PVT's former kind name, ``spatial_reduction_attention``, still loads as this
kind with PVT's values.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.blocks._attention_common import (
    AttentionParams,
    attend,
    merge_heads,
    split_fused,
    split_heads,
)
from vitgraph.errors import ShapeError
from vitgraph.registry import deprecated_alias, register
from vitgraph.shapes import TensorType, Tokens, expect_grid, expect_tokens
from vitgraph.vocabulary import PosInt


@register
class SpatialReductionAttention(AttentionParams):
    """Attention whose keys/values come from the grid sub-sampled by a strided conv + norm."""

    kind: Literal["sr_attention"] = "sr_attention"
    weight_init = "conv_fan_out"  # timm Twins._init_weights (PVT's spec: HF's trunc_normal_all)
    sr_ratio: PosInt = 1
    """Sub-sampling factor of the key/value grid (PVT and Twins: 8, 4, 2, 1 by stage)."""
    norm_eps: Annotated[float, Field(gt=0)] = 1e-5
    """Epsilon of the LayerNorm after the sub-sampling conv (HF's PVT: 1e-6)."""
    exact_reduction: bool = False
    """Require ``sr_ratio`` to divide both grid sides, so every token reaches the keys and
    values (PVT's layers ask it); off, the strided conv skips the rows and columns past
    the last whole window, as the references do at sizes their ratios do not divide."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        if self.sr_ratio > 1:
            rows, cols = expect_grid(tokens, self.kind)
            if tokens.prefix:
                raise ShapeError(
                    f"sr_ratio {self.sr_ratio} sub-samples the token map, which has no "
                    f"place for the {tokens.prefix} prefix token(s) of {tokens}",
                    field="sr_ratio",
                    hint="use sr_ratio 1 where a class token is (PVT adds its class "
                    "token in the last stage)",
                )
            if self.sr_ratio > min(rows, cols):
                raise ShapeError(
                    f"sr_ratio {self.sr_ratio} is larger than the {rows}x{cols} grid it receives",
                    field="sr_ratio",
                    hint=f"use an sr_ratio from 1 to {min(rows, cols)}",
                )
            for side in (rows, cols) if self.exact_reduction else ():
                if side % self.sr_ratio:
                    fits = [d for d in range(1, side + 1) if rows % d == 0 and cols % d == 0]
                    raise ShapeError(
                        f"sr_ratio {self.sr_ratio} must divide the {rows}x{cols} "
                        f"grid it receives ({side} leaves {side % self.sr_ratio})",
                        field="sr_ratio",
                        hint=f"use an sr_ratio from {fits}",
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


def _as_pvt_layers_had_it(params: dict[str, Any]) -> dict[str, Any]:
    """``spatial_reduction_attention``'s defaults, where the old spec left them out."""
    return {"norm_eps": 1e-6, "exact_reduction": True, **params}


deprecated_alias(
    "spatial_reduction_attention",
    "sr_attention",
    "the same attention, one kind for PVT and Twins; the old name keeps its LayerNorm "
    "eps 1e-6 and the divisibility check (exact_reduction); set "
    "`init: {sr_attention: trunc_normal_all}` to draw it as HF's PVT does",
    _as_pvt_layers_had_it,
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
        self.sr: nn.Module
        self.norm: nn.Module
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
        q = split_heads(self.q(x), self.heads)  # (B, H, N, d)
        if self.subsample:
            assert self.grid is not None
            image = x.transpose(1, 2).unflatten(2, self.grid)  # (B, C, rows, cols)
            x = self.norm(self.sr(image).flatten(2).transpose(1, 2))  # (B, N / sr², C)
        k, v = split_fused(self.kv(x), 2, self.heads)  # each (B, H, M, d)
        out = attend(q, k, v, self.attn_drop, self.training, self.scale)
        return self.proj_drop(self.proj(merge_heads(out)))
