"""EVA's attention (Fang et al. 2023, EVA-02, arXiv:2303.11331 §2; timm's
``EvaAttention``): multi-head self-attention whose query and value projections carry a
bias and whose key projection has none (a key bias adds the same logit to a whole row of
the softmax, so it is fixed at 0), fused into one ``qkv`` or three separate projections,
with the shared core's RoPE and qk-norm, and an optional LayerNorm of the merged heads
before the output projection (``inner_norm``: timm's ``scale_attn_inner``, NormFormer's
head scaling). The rest of EVA-02 is ``encoder_layer`` with ``glu_mlp`` and its sub-LN.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.blocks._attention_common import (
    AttentionParams,
    attend,
    merge_heads,
    qk_norms,
    split_fused,
    split_heads,
)
from vitgraph.registry import register
from vitgraph.shapes import TensorType


@register
class EvaAttentionBlock(AttentionParams):
    """Self-attention with q and v biases only (k's is 0), RoPE and qk-norm optional."""

    kind: Literal["eva_attention"] = "eva_attention"
    weight_init = "trunc_normal_linear"  # timm Eva._init_weights: TN(0.02) linears
    computes_qk_norm = True
    computes_rope = True
    fused: bool = True
    """One ``qkv`` projection with ``q_bias`` and ``v_bias`` (timm's ``qkv_fused``);
    false: ``q_proj``, ``k_proj`` (no bias) and ``v_proj``."""
    inner_norm: bool = False
    """LayerNorm over the merged heads before ``proj`` (timm's ``scale_attn_inner``)."""
    inner_norm_eps: Annotated[float, Field(gt=0)] = 1e-6
    """Epsilon of that LayerNorm."""

    def build(self, *inputs: TensorType) -> nn.Module:
        assert self.dim is not None and self.head_dim is not None
        module = EvaAttention(
            self.dim,
            self.heads,
            self.head_dim,
            self.fused,
            self.qkv_bias,
            self.proj_bias,
            self.attn_drop,
            self.proj_drop,
        )
        module.q_norm, module.k_norm = qk_norms(self.qk_norm, self.head_dim, self.qk_norm_eps)
        if self.inner_norm:
            module.norm = nn.LayerNorm(self.heads * self.head_dim, eps=self.inner_norm_eps)
        module.rope = self.rope_for(inputs[0])
        return module


class EvaAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        fused: bool,
        qkv_bias: bool,
        proj_bias: bool,
        attn_drop: float,
        proj_drop: float,
    ) -> None:
        super().__init__()
        self.heads, self.scale, self.attn_drop = heads, head_dim**-0.5, attn_drop
        inner = heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=False) if fused else None
        self.q_bias = nn.Parameter(torch.zeros(inner)) if fused and qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(inner)) if fused and qkv_bias else None
        self.q_proj = None if fused else nn.Linear(dim, inner, bias=qkv_bias)
        self.k_proj = None if fused else nn.Linear(dim, inner, bias=False)
        self.v_proj = None if fused else nn.Linear(dim, inner, bias=qkv_bias)
        self.q_norm: nn.Module = nn.Identity()  # set by the block (qk_norm)
        self.k_norm: nn.Module = nn.Identity()
        self.rope: nn.Module = nn.Identity()  # set by the block (rope)
        self.norm: nn.Module = nn.Identity()  # set by the block (inner_norm)
        self.proj = nn.Linear(inner, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.qkv is not None:
            bias = None
            if self.q_bias is not None and self.v_bias is not None:
                bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
            q, k, v = split_fused(F.linear(x, self.qkv.weight, bias), 3, self.heads)
        else:
            assert self.q_proj is not None and self.k_proj is not None and self.v_proj is not None
            q = split_heads(self.q_proj(x), self.heads)  # (B, heads, N, d)
            k = split_heads(self.k_proj(x), self.heads)
            v = split_heads(self.v_proj(x), self.heads)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k = self.rope(q), self.rope(k)
        x = attend(q, k, v, self.attn_drop, self.training, self.scale)
        return self.proj_drop(self.proj(self.norm(merge_heads(x))))  # (B, N, C)
