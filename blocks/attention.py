"""Multi-head self-attention (Vaswani et al. 2017; ViT arXiv:2010.11929 §3.1 Eq. 2).

One fused qkv projection and ``F.scaled_dot_product_attention``, which picks the fastest
kernel the device has (the core in ``_attention_common``: split heads, attend, merge).
Other attention kinds live in their own files and reuse the vocabulary and that core:
``heads``, ``head_dim``, ``qkv_bias``, ``attn_drop``, ``proj_drop``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vitgraph.blocks._attention_common import (
    AttentionParams,
    Rope,
    attend,
    merge_heads,
    qk_norms,
    split_fused,
)
from vitgraph.layers import Incremental, chunk_causal_mask
from vitgraph.registry import register
from vitgraph.shapes import TensorType


@register
class MultiHeadSelfAttention(AttentionParams):
    """Multi-head self-attention with a fused qkv projection."""

    kind: Literal["mhsa"] = "mhsa"
    weight_init = "trunc_normal_linear"  # timm init_weights_vit_timm (most families)
    computes_causal = True
    computes_qk_norm = True
    computes_rope = True

    def build(self, *inputs: TensorType) -> nn.Module:
        assert self.dim is not None and self.head_dim is not None
        attention = Attention(
            self.dim,
            self.heads,
            self.head_dim,
            self.qkv_bias,
            self.proj_bias,
            self.attn_drop,
            self.proj_drop,
            self.causal,
            self.qk_norm,
            self.qk_norm_eps,
        )
        attention.rope = self.rope_for(inputs[0])
        return attention


class Attention(nn.Module, Incremental):
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
        qk_norm: str | None = None,
        qk_norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.heads, self.head_dim, self.causal = heads, head_dim, causal
        self.scale = head_dim**-0.5
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=qkv_bias)
        self.q_norm, self.k_norm = qk_norms(qk_norm, head_dim, qk_norm_eps)
        #: rotary embedding of queries and keys (``Rope``; ``rope`` off: Identity)
        self.rope: nn.Module = nn.Identity()
        self.proj = nn.Linear(heads * head_dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()
        #: keys and values of the positions seen so far while decoding (``Incremental``)
        self.cache: list[torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = split_fused(self.qkv(x), 3, self.heads)  # each (B, H, N, d)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.cache is not None:  # decoding: RoPE after the positions already cached
            start = self.cache[0].shape[2] if self.cache else 0
            return self._continue(*self._rotate(q, k, start), v)
        q, k = self._rotate(q, k, None)
        x = attend(q, k, v, self.attn_drop, self.training, self.scale, self.causal)
        return self.proj_drop(self.proj(merge_heads(x)))  # (B, N, C)

    def _rotate(
        self, q: torch.Tensor, k: torch.Tensor, start: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE of whole sequences (``start`` None) or of a chunk after ``start`` cached
        positions."""
        if not isinstance(self.rope, Rope):
            return q, k
        if start is None:
            return self.rope(q), self.rope(k)
        return self.rope.chunk(q, start), self.rope.chunk(k, start)

    def decoding(self, on: bool) -> None:
        self.cache = [] if on else None

    def _continue(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """New positions over the cached ones: the cost per token stays flat."""
        assert self.cache is not None
        past = self.cache[0].shape[2] if self.cache else 0
        if self.cache:
            k = torch.cat([self.cache[0], k], dim=2)
            v = torch.cat([self.cache[1], v], dim=2)
        self.cache[:] = [k, v]
        mask = chunk_causal_mask(q.shape[2], past, q.device) if self.causal else None
        causal = self.causal and past == 0 and q.shape[2] > 1
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=self.scale, is_causal=causal
        )
        return self.proj_drop(self.proj(merge_heads(x)))
