"""Shared pieces of the attention kinds: the common parameter vocabulary (``heads``,
``head_dim``, ``qkv_bias``, ``proj_bias``, ``attn_drop``, ``proj_drop``) and its shape rule.

Not a block family: it registers no kind. Every attention kind of this project subclasses
``AttentionParams`` so any of them can be swapped into ``encoder_layer`` with one edit.
"""

from __future__ import annotations

from typing import Self

from vitgraph.block import Block
from vitgraph.shapes import TensorType, Tokens, expect_tokens
from vitgraph.vocabulary import DropRate, PosInt, head_width


class AttentionParams(Block):
    """The parameters every attention kind shares (timm's vocabulary)."""

    role = "attention"
    heads: PosInt
    """Number of heads."""
    dim: int | None = None
    """Token width; default: the input's."""
    head_dim: PosInt | None = None
    """Width of each head; default: dim / heads."""
    qkv_bias: bool = True
    """Bias in the query/key/value projections."""
    proj_bias: bool = True
    """Bias in the output projection."""
    attn_drop: DropRate = 0.0
    """Dropout on the attention weights."""
    proj_drop: DropRate = 0.0
    """Dropout after the output projection."""

    def resolve(self, tokens: Tokens) -> Self:
        """Fill ``dim`` and ``head_dim`` from the input tokens (heads must divide the width
        unless ``head_dim`` is given)."""
        head_dim = head_width(self.dim, self.heads, self.head_dim, tokens)
        return self.model_copy(update={"dim": tokens.dim, "head_dim": head_dim})

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        return self.resolve(tokens), tokens
