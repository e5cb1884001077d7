"""Multihead attention pooling, MAP (Lee et al. 2019 "Set Transformer" §3.2 PMA; the
head of SigLIP, Zhai et al. 2023 arXiv:2303.15343, and of big_vision's ViTs): one learned
latent query attends to the tokens, then a residual MLP; timm's ``AttentionPoolLatent``
(``global_pool='map'``).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.blocks._attention_common import attend, merge_heads, split_fused, split_heads
from vitgraph.blocks.mlp import Mlp
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Vector, expect_tokens
from vitgraph.vocabulary import Activation, PosInt, scaled_width


@register
class AttentionPool(Block):
    """A learned query attends to the patch tokens (heads of ``dim / heads``), its output
    projected, then ``x + mlp(norm(x))``: ``(N, D) -> (D,)``."""

    kind: Literal["map_pool"] = "map_pool"
    role = "pooling"
    weight_init = "trunc_normal_linear"
    heads: PosInt
    """Attention heads (timm: the encoder's)."""
    mlp_ratio: Annotated[float, Field(gt=0)] = 4.0
    """Hidden width of the MLP over the token width."""
    qkv_bias: bool = True
    """Biases in the query and key/value projections."""
    norm: Literal["layernorm", "rmsnorm"] | None = "layernorm"
    """Norm before the MLP (null: none)."""
    norm_eps: Annotated[float, Field(gt=0)] = 1e-6
    """Epsilon of that norm."""
    act: Activation = "gelu"
    """Activation of the MLP."""
    include_prefix: bool = False
    """Attend to the class/register tokens too (timm's ``pool_include_prefix``)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        if tokens.dim % self.heads:
            raise ShapeError(
                f"map_pool: {self.heads} heads do not divide the width {tokens.dim}",
                field="heads",
                hint="choose a head count that divides the token width",
            )
        if tokens.patches == 0 and not self.include_prefix:
            raise ShapeError(f"map_pool has no patch tokens to attend to in {tokens}")
        scaled_width(tokens.dim, self.mlp_ratio, "mlp_ratio")
        return self, Vector(tokens.dim)

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        skip = 0 if self.include_prefix else tokens.prefix
        norm: nn.Module = nn.Identity()
        if self.norm == "layernorm":
            norm = nn.LayerNorm(tokens.dim, eps=self.norm_eps)
        elif self.norm == "rmsnorm":
            norm = nn.RMSNorm(tokens.dim, eps=self.norm_eps)
        hidden = int(tokens.dim * self.mlp_ratio)
        return AttentionPoolLatent(
            tokens.dim, self.heads, hidden, self.qkv_bias, norm, self.act, skip
        )


class AttentionPoolLatent(nn.Module):
    def __init__(
        self, dim: int, heads: int, hidden: int, bias: bool, norm: nn.Module, act: str, skip: int
    ) -> None:
        super().__init__()
        self.heads, self.skip = heads, skip
        self.latent = nn.Parameter(torch.empty(1, 1, dim))
        std = dim**-0.5  # timm's trunc_normal_tf_: cut at two standard deviations
        nn.init.trunc_normal_(self.latent, std=std, a=-2 * std, b=2 * std)
        self.q = nn.Linear(dim, dim, bias=bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim)
        self.norm = norm
        self.mlp = Mlp(dim, hidden, dim, act, 0.0, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, self.skip :] if self.skip else x  # (B, N, D)
        q = split_heads(self.q(self.latent).expand(x.shape[0], -1, -1), self.heads)
        k, v = split_fused(self.kv(x), 2, self.heads)  # each (B, H, N, d)
        x = self.proj(merge_heads(attend(q, k, v)))  # (B, 1, D)
        x = x + self.mlp(self.norm(x))
        return x[:, 0]  # (B, D)
