"""Shared pieces of the attention kinds: the common parameter vocabulary (``heads``,
``head_dim``, ``qkv_bias``, ``proj_bias``, ``attn_drop``, ``proj_drop``) and its shape rule.

Not a block family: it registers no kind. Every attention kind of this project subclasses
``AttentionParams`` so any of them can be swapped into ``encoder_layer`` with one edit.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field

from vitgraph.errors import ShapeError
from vitgraph.registry import Block
from vitgraph.shapes import TensorType, Tokens, expect_tokens

Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


class AttentionParams(Block):
    """The parameters every attention kind shares (timm's vocabulary)."""

    family = "attention"
    heads: Annotated[int, Field(gt=0)]
    """Number of heads."""
    dim: int | None = None
    """Token width; default: the input's."""
    head_dim: Annotated[int, Field(gt=0)] | None = None
    """Width of each head; default: dim / heads."""
    qkv_bias: bool = True
    """Bias in the query/key/value projections."""
    proj_bias: bool = True
    """Bias in the output projection."""
    attn_drop: Rate = 0.0
    """Dropout on the attention weights."""
    proj_drop: Rate = 0.0
    """Dropout after the output projection."""

    def resolve(self, tokens: Tokens) -> Self:
        """Fill ``dim`` and ``head_dim`` from the input tokens (heads must divide the width
        unless ``head_dim`` is given)."""
        head_dim = head_width(self.dim, self.heads, self.head_dim, tokens)
        return self.model_copy(update={"dim": tokens.dim, "head_dim": head_dim})

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        return self.resolve(tokens), tokens


def head_width(dim: int | None, heads: int, head_dim: int | None, tokens: Tokens) -> int:
    """The width of each head for ``tokens``: ``head_dim`` when given, else the token width
    over ``heads`` (which must divide it); a given ``dim`` must be the tokens' width."""
    if dim is not None and dim != tokens.dim:
        raise ShapeError(
            f"dim {dim} does not match the {tokens.dim}-wide tokens it receives",
            field="dim",
            hint="omit dim to take it from the input",
        )
    if head_dim is not None:
        return head_dim
    if tokens.dim % heads:
        raise ShapeError(
            f"heads {heads} must divide the token width {tokens.dim}",
            field="heads",
            hint=f"use heads from {divisors(tokens.dim)}, or set head_dim",
        )
    return tokens.dim // heads


def divisors(n: int) -> str:
    """The divisors of ``n`` up to 32, for hints."""
    return ", ".join(str(d) for d in range(1, min(n, 32) + 1) if n % d == 0)
