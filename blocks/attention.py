"""Multi-head self-attention (Vaswani et al. 2017; ViT arXiv:2010.11929 §3.1 Eq. 2).

One fused qkv projection and ``F.scaled_dot_product_attention``, which picks the fastest
kernel the device has (the core in ``_attention_common``: split heads, attend, merge).
Other attention kinds live in their own files and reuse the vocabulary and that core:
``heads``, ``head_dim``, ``qkv_bias``, ``attn_drop``, ``proj_drop``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from vitgraph.blocks._attention_common import AttentionParams, attend, merge_heads, split_fused
from vitgraph.registry import register
from vitgraph.shapes import TensorType


@register
class MultiHeadSelfAttention(AttentionParams):
    """Multi-head self-attention with a fused qkv projection."""

    kind: Literal["mhsa"] = "mhsa"
    weight_init = "trunc_normal_linear"  # timm init_weights_vit_timm (most families)
    causal: bool = False
    """Each token attends to itself and the tokens before it only (autoregressive
    models: iGPT, the Image Transformer)."""

    def build(self, *inputs: TensorType) -> nn.Module:
        assert self.dim is not None and self.head_dim is not None
        return Attention(
            self.dim,
            self.heads,
            self.head_dim,
            self.qkv_bias,
            self.proj_bias,
            self.attn_drop,
            self.proj_drop,
            self.causal,
        )


class Attention(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        qkv_bias: bool,
        proj_bias: bool,
        attn_drop: float,
        proj_drop: float,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.heads, self.head_dim, self.causal = heads, head_dim, causal
        self.scale = head_dim**-0.5
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(heads * head_dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = split_fused(self.qkv(x), 3, self.heads)  # each (B, H, N, d)
        x = attend(q, k, v, self.attn_drop, self.training, self.scale, self.causal)
        return self.proj_drop(self.proj(merge_heads(x)))  # (B, N, C)
