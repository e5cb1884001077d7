"""Re-attention (DeepViT arXiv:2103.11886 §4.2, Eq. 3): after the softmax, the heads'
attention maps are mixed by a learned heads×heads transform Θ (a 1×1 convolution over the
head axis, with bias) and normalised by a BatchNorm over heads, which regenerates diverse
maps in deep layers. The softmax is explicit: the map is edited, so SDPA cannot be used.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from vitgraph.block import Fold, ScaleFold, batchnorm_pairs
from vitgraph.blocks._attention_common import AttentionParams, merge_heads, split_fused
from vitgraph.registry import register
from vitgraph.shapes import TensorType


@register
class ReAttentionBlock(AttentionParams):
    """Self-attention whose softmax maps are mixed across heads (1×1 conv) and
    batch-normalised before they weight the values."""

    kind: Literal["reattention"] = "reattention"
    weight_init = "trunc_normal_linear"  # DeepViT code: _init_weights (conv, BN default)
    transform_scale: bool = False
    """Multiply the re-attention map by the attention scale head_dim^-0.5 (the official
    ``transform_scale``, on in DeepViT-S)."""

    def build(self, *inputs: TensorType) -> nn.Module:
        assert self.dim and self.head_dim
        return ReAttention(
            self.dim,
            self.heads,
            self.head_dim,
            self.qkv_bias,
            self.proj_bias,
            self.attn_drop,
            self.proj_drop,
            self.transform_scale,
        )

    def constant_scales(self, module: Any) -> list[ScaleFold]:
        """1/sqrt(head_dim) into the query rows of qkv (the first third of them)."""
        if not isinstance(getattr(module, "qkv", None), nn.Linear):
            return []
        return [ScaleFold("scale", "qkv", ((0, module.heads * module.head_dim),))]

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        """Norm(Θ A) of Eq. 3: the BatchNorm over heads folds into the 1×1 head mixing Θ."""
        return batchnorm_pairs(module, ("var_norm", "reatten_matrix"))


class ReAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        qkv_bias: bool,
        proj_bias: bool,
        attn_drop: float,
        proj_drop: float,
        transform_scale: bool,
    ) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.scale = head_dim**-0.5
        self.reatten_scale = self.scale if transform_scale else 1.0
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=qkv_bias)
        self.reatten_matrix = nn.Conv2d(heads, heads, 1)  # Θ: mixes the heads' maps
        self.var_norm = nn.BatchNorm2d(heads)  # Norm(·) of Eq. 3, one channel per head
        self.attn_drop = nn.Dropout(attn_drop) if attn_drop else nn.Identity()
        self.proj = nn.Linear(heads * head_dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = split_fused(self.qkv(x), 3, self.heads)  # each (B, H, N, d)
        if self.scale != 1.0:  # 1 once vitgraph.optimize folded it into the query rows
            q = q * self.scale
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, H, N, N)
        attn = self.attn_drop(attn)
        attn = self.var_norm(self.reatten_matrix(attn))
        if self.reatten_scale != 1.0:
            attn = attn * self.reatten_scale
        return self.proj_drop(self.proj(merge_heads(attn @ v)))  # (B, N, C)
