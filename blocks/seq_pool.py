"""Sequence pooling (CCT, Hassani et al., arXiv:2104.05704 §3.1, Eq. 4-5).

Instead of a class token, an importance weight is learned for every output token:
``softmax(Linear(d → 1)(x))ᵀ x`` over the sequence, which makes a vector of width d.
"""

from __future__ import annotations

from typing import Literal, Self

import torch
from torch import nn

from vitgraph.block import Block
from vitgraph.blocks.heads import init_linear
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Vector, expect_tokens


@register
class SequencePool(Block):
    """Attention-weighted mean of all tokens (prefix ones included)."""

    kind: Literal["seq_pool"] = "seq_pool"
    role = "pooling"
    weight_init = "trunc_normal_linear"  # vit-pytorch CCT init_weight

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        return self, Vector(expect_tokens(inputs[0], self.kind).dim)

    def build(self, *inputs: TensorType) -> nn.Module:
        return SeqPool(expect_tokens(inputs[0], self.kind).dim)


class SeqPool(nn.Linear):
    """An ``nn.Linear(dim, 1)`` (keys ``<id>.weight``/``<id>.bias``, as the official
    ``attention_pool``) that pools with the weights it computes."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim, 1)
        init_linear(self, "trunc_normal")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, N, D)
        weights = super().forward(x).softmax(dim=1)  # (B, N, 1)
        return (weights.transpose(1, 2) @ x).squeeze(1)  # (B, D)
