"""Multi-head self-attention (Vaswani et al. 2017; ViT arXiv:2010.11929 §3.1 Eq. 2).

One fused qkv projection and ``F.scaled_dot_product_attention``, which picks the fastest
kernel the device has. Other attention kinds live in their own files and reuse the
vocabulary: ``heads``, ``head_dim``, ``qkv_bias``, ``attn_drop``, ``proj_drop``.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.errors import ShapeError
from vitgraph.registry import Block, register
from vitgraph.shapes import TensorType, expect_tokens

Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


@register
class MultiHeadSelfAttention(Block):
    """Multi-head self-attention with a fused qkv projection."""

    kind: Literal["mhsa"] = "mhsa"
    family = "attention"
    heads: Annotated[int, Field(gt=0)]
    """Number of heads."""
    dim: int | None = None
    """Token width; default: the input's."""
    head_dim: int | None = None
    """Width of each head; default: dim / heads."""
    qkv_bias: bool = True
    """Bias in the qkv projection."""
    proj_bias: bool = True
    """Bias in the output projection."""
    attn_drop: Rate = 0.0
    """Dropout on the attention weights."""
    proj_drop: Rate = 0.0
    """Dropout after the output projection."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        if self.dim is not None and self.dim != tokens.dim:
            raise ShapeError(f"dim {self.dim} does not match the {tokens.dim}-wide tokens it "
                             "receives", field="dim", hint="omit dim to take it from the input")
        head_dim = self.head_dim
        if head_dim is None:
            if tokens.dim % self.heads:
                raise ShapeError(f"heads {self.heads} must divide the token width {tokens.dim}",
                                 field="heads",
                                 hint=f"use heads from {_divisors(tokens.dim)}, or set head_dim")
            head_dim = tokens.dim // self.heads
        return self.model_copy(update={"dim": tokens.dim, "head_dim": head_dim}), tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        assert self.dim is not None and self.head_dim is not None
        return Attention(self.dim, self.heads, self.head_dim, self.qkv_bias, self.proj_bias,
                         self.attn_drop, self.proj_drop)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, qkv_bias: bool, proj_bias: bool,
                 attn_drop: float, proj_drop: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.scale = head_dim**-0.5
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(heads * head_dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x).unflatten(-1, (3, self.heads, self.head_dim))  # (B, N, 3, H, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, d)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )
        x = x.transpose(1, 2).flatten(2)  # (B, N, H*d)
        return self.proj_drop(self.proj(x))


def _divisors(n: int) -> str:
    found = [d for d in range(1, min(n, 32) + 1) if n % d == 0]
    return ", ".join(str(d) for d in found)
