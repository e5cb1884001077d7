"""The attention of T2T-ViT's tokens-to-token layers (Yuan et al., arXiv:2101.11986 §3.1).

Both kinds map ``dim``-wide tokens (C·k·k after a soft split) to ``out_dim`` (64) with one
head and, since the widths differ, use ``v`` as the skip connection: ``v + proj(attn)``.
``t2t_performer`` approximates softmax attention with positive orthogonal random features
(Performer, Choromanski et al. 2020, FAVOR+; ``kernel_ratio · out_dim`` features, a frozen
parameter as in the official code); ``t2t_attention`` is exact (T2T-ViT_t).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.blocks._attention_common import attend
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, expect_tokens
from vitgraph.vocabulary import DropRate, PosInt


class _T2TAttention(Block):
    role = "attention"
    weight_init = "trunc_normal_linear"  # T2T-ViT code: _init_weights (w fixed)
    out_dim: PosInt
    """Width of the output tokens (T2T-ViT's token_dim, 64)."""
    proj_drop: DropRate = 0.0
    """Dropout after the output projection."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = expect_tokens(inputs[0], self.kind)
        return self, Tokens(self.out_dim, x.grid, x.prefix, x.count)


@register
class T2TPerformer(_T2TAttention):
    """Single-head Performer attention with a ``v`` skip (official ``Token_performer``)."""

    kind: Literal["t2t_performer"] = "t2t_performer"
    kernel_ratio: Annotated[float, Field(gt=0)] = 0.5
    """Random features per output channel."""
    proj_drop: DropRate = 0.1
    """Dropout after the output projection (official: 0.1)."""

    def build(self, *inputs: TensorType) -> nn.Module:
        x = expect_tokens(inputs[0], self.kind)
        return PerformerAttention(x.dim, self.out_dim, self.kernel_ratio, self.proj_drop)


@register
class T2TAttention(_T2TAttention):
    """Single-head softmax attention with a ``v`` skip (official ``Token_transformer``).
    The scale is ``dim**-0.5`` of the *input* width, as in the official code."""

    kind: Literal["t2t_attention"] = "t2t_attention"
    qkv_bias: bool = False
    """Bias in the qkv projection."""

    def build(self, *inputs: TensorType) -> nn.Module:
        x = expect_tokens(inputs[0], self.kind)
        return SkipAttention(x.dim, self.out_dim, self.qkv_bias, self.proj_drop)


class PerformerAttention(nn.Module):
    def __init__(self, dim: int, out: int, kernel_ratio: float, drop: float) -> None:
        super().__init__()
        self.out, self.features = out, int(out * kernel_ratio)
        self.kqv = nn.Linear(dim, 3 * out)
        self.proj = nn.Linear(out, out)
        self.drop = nn.Dropout(drop) if drop else nn.Identity()
        w = nn.init.orthogonal_(torch.empty(self.features, out)) * math.sqrt(self.features)
        self.w = nn.Parameter(w, requires_grad=False)  # fixed random features, counted
        self.eps = 1e-8

    def features_of(self, x: torch.Tensor) -> torch.Tensor:
        """Positive random features exp(wᵀx − |x|²/2) / √m: (B, T, d) -> (B, T, m)."""
        sq = (x * x).sum(dim=-1, keepdim=True) / 2
        return torch.exp(x @ self.w.t() - sq) / math.sqrt(self.features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, q, v = self.kqv(x).split(self.out, dim=-1)  # each (B, T, out); official order
        kp, qp = self.features_of(k), self.features_of(q)  # (B, T, m)
        normaliser = qp @ kp.sum(dim=1).unsqueeze(-1)  # (B, T, 1)
        y = (qp @ (kp.transpose(1, 2) @ v)) / (normaliser + self.eps)  # (B, T, out)
        return v + self.drop(self.proj(y))


class SkipAttention(nn.Module):
    def __init__(self, dim: int, out: int, qkv_bias: bool, drop: float) -> None:
        super().__init__()
        self.out, self.scale = out, dim**-0.5
        self.qkv = nn.Linear(dim, 3 * out, bias=qkv_bias)
        self.proj = nn.Linear(out, out)
        self.drop = nn.Dropout(drop) if drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).split(self.out, dim=-1)  # each (B, T, out), one head
        # one head as a 4-D (B, 1, T, out) call: the ONNX exporter translates only 4-D SDPA
        y = attend(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=self.scale).squeeze(1)
        return v + self.drop(self.proj(y))
