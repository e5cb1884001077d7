"""Talking-heads attention (Shazeer et al. arXiv:2003.02436), as CaiT uses it in its
self-attention layers (arXiv:2103.17239 §2.1): the heads' logits are mixed by a learned
heads×heads map before the softmax (``proj_l``) and the weights again after it
(``proj_w``). The softmax is explicit: the map is edited, so SDPA cannot be used.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from vitgraph.block import ScaleFold
from vitgraph.blocks._attention_common import AttentionParams, merge_heads, split_fused
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens


@register
class TalkingHeadsAttention(AttentionParams):
    """Multi-head self-attention whose heads exchange logits before and weights after the
    softmax (two learned heads×heads maps with bias)."""

    kind: Literal["talking_heads"] = "talking_heads"
    weight_init = "trunc_normal_linear"  # timm Cait._init_weights

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and self.dim and self.head_dim
        return TalkingHeads(
            self.dim,
            self.heads,
            self.head_dim,
            tokens.length,
            self.qkv_bias,
            self.proj_bias,
            self.attn_drop,
            self.proj_drop,
        )

    def constant_scales(self, module: Any) -> list[ScaleFold]:
        """1/sqrt(head_dim) into the query rows of qkv (the first third of them)."""
        if not isinstance(getattr(module, "qkv", None), nn.Linear):
            return []
        return [ScaleFold("scale", "qkv", ((0, module.heads * module.head_dim),))]


def mix_heads(attn: torch.Tensor, mixer: nn.Linear, length: int, bias: bool = True) -> torch.Tensor:
    """Apply a heads×heads linear map to (B, H, N, N) maps: one batched matmul over the
    flattened maps (bias fused by baddbmm), no permutes and no copy of the maps.
    (``torch.matmul`` of a 2-D weight with the 3-D maps folds the batch into a transposed
    copy of the maps, and timm's permute + Linear leaves a strided map for the softmax:
    both ~3x slower on CPU for CaiT-XXS24's 4 heads of 196x196 maps.)"""
    flat = attn.flatten(2)  # (B, H, N*N), a view
    weight = mixer.weight.expand(flat.shape[0], -1, -1)  # (B, H, H), a view
    if bias:
        mixed = torch.baddbmm(mixer.bias[:, None], weight, flat)  # bias + W @ maps
    else:
        mixed = torch.bmm(weight, flat)
    return mixed.unflatten(2, (length, length))


class TalkingHeads(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        length: int,
        qkv_bias: bool,
        proj_bias: bool,
        attn_drop: float,
        proj_drop: float,
    ) -> None:
        super().__init__()
        self.heads, self.head_dim, self.length = heads, head_dim, length
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(heads * head_dim, dim, bias=proj_bias)
        self.proj_l = nn.Linear(heads, heads)  # mixes logits (before the softmax)
        self.proj_w = nn.Linear(heads, heads)  # mixes weights (after the softmax)
        self.attn_drop = nn.Dropout(attn_drop) if attn_drop else nn.Identity()
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()
        self.fold_bias = not attn_drop  # fixed at build time: no branch on tensors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = split_fused(self.qkv(x), 3, self.heads)  # each (B, H, N, d)
        if self.scale != 1.0:  # 1 once vitgraph.optimize folded it into the query rows
            q = q * self.scale
        attn = q @ k.transpose(-2, -1)  # (B, H, N, N)
        attn = mix_heads(attn, self.proj_l, self.length).softmax(dim=-1)
        if self.fold_bias:
            # (W A + b) v = (W A) v + b Σ_j v_j: the weights' bias reaches the output
            # through the sum of the values, which saves a pass over the N×N maps
            attn = mix_heads(attn, self.proj_w, self.length, bias=False)
            x = attn @ v + self.proj_w.bias[:, None, None] * v.sum(dim=2, keepdim=True)
        else:  # dropout acts on the mixed weights, bias included
            mixed = mix_heads(attn, self.proj_w, self.length)
            # laid out as timm's permute + Linear leaves them, (B, N, N, H) in memory:
            # dropout draws its mask in memory order, so one seed drops the same weights
            mixed = mixed.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
            x = self.attn_drop(mixed) @ v
        return self.proj_drop(self.proj(merge_heads(x)))  # (B, N, C)
