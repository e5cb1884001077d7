"""Class attention (CaiT arXiv:2103.17239 §3): only the class token queries; keys and
values come from the class token and every patch token. The block returns the updated
class token alone (B, 1, D); ``merge_prefix`` puts it back in front of the unchanged
patch tokens, so patches pass the class-attention stage untouched.

Also the two structural kinds that stage needs: ``add_prefix`` (the residual on the class
token alone) and ``merge_prefix``.
"""

from __future__ import annotations

from typing import Any, Literal, Self

import torch
from torch import nn

from vitgraph.block import Block, FunctionOp
from vitgraph.blocks._attention_common import AttentionParams, attend, merge_heads, split_heads
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, expect_tokens


def _need_prefix(tokens: Tokens, what: str) -> None:
    if tokens.prefix == 0:
        raise ShapeError(
            f"{what} needs a class token in front of the patches, but receives {tokens}",
            hint="add a cls_token node before it",
        )


def _prefix_type(tokens: Tokens) -> Tokens:
    return Tokens(tokens.dim, None, tokens.prefix, 0)


@register
class ClassAttention(AttentionParams):
    """Attention whose queries are the prefix (class) tokens only, over all tokens; returns
    the prefix tokens' update (CaiT §3)."""

    kind: Literal["class_attention"] = "class_attention"
    weight_init = "trunc_normal_linear"  # timm Cait._init_weights

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        _need_prefix(tokens, self.kind)
        return self.resolve(tokens), _prefix_type(tokens)

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and self.dim and self.head_dim
        return ClassAttn(
            self.dim,
            self.heads,
            self.head_dim,
            tokens.prefix,
            self.qkv_bias,
            self.proj_bias,
            self.attn_drop,
            self.proj_drop,
        )

    def fused_projections(self, module: Any) -> list[tuple[str, ...]]:
        """k and v read all tokens (q only the class token): one matmul at inference."""
        return [("k", "v")] if isinstance(module, ClassAttn) else []


class ClassAttn(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        prefix: int,
        qkv_bias: bool,
        proj_bias: bool,
        attn_drop: float,
        proj_drop: float,
    ) -> None:
        super().__init__()
        self.heads, self.head_dim, self.prefix = heads, head_dim, prefix
        self.scale = head_dim**-0.5
        self.attn_drop = attn_drop
        inner = heads * head_dim
        # separate q, k, v (the official names): q only runs on the class token
        self.q = nn.Linear(dim, inner, bias=qkv_bias)
        self.k = nn.Linear(dim, inner, bias=qkv_bias)
        self.v = nn.Linear(dim, inner, bias=qkv_bias)
        self.proj = nn.Linear(inner, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.q(x[:, : self.prefix]), self.heads)  # (B, H, P, d)
        k = split_heads(self.k(x), self.heads)  # (B, H, N, d)
        v = split_heads(self.v(x), self.heads)
        out = attend(q, k, v, self.attn_drop, self.training, self.scale)  # (B, H, P, d)
        return self.proj_drop(self.proj(merge_heads(out)))  # (B, P, C)


def add_to_prefix(update: torch.Tensor, x: torch.Tensor, *, prefix: int) -> torch.Tensor:
    return x[:, :prefix] + update


def replace_prefix(new: torch.Tensor, x: torch.Tensor, *, prefix: int) -> torch.Tensor:
    return torch.cat([new, x[:, prefix:]], dim=1)


@register
class AddPrefix(Block):
    """The residual of a class-token-only branch: the first input (an update of the prefix
    tokens) plus the prefix tokens of the second input (the sequence)."""

    kind: Literal["add_prefix"] = "add_prefix"
    role = "structural"
    arity = 2

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        update = expect_tokens(inputs[0], self.kind + " (first input: the update)")
        tokens = expect_tokens(inputs[1], self.kind + " (second input: the sequence)")
        _check_prefix(update, tokens, self.kind)
        return self, update

    def build(self, *inputs: TensorType) -> FunctionOp:
        tokens = expect_tokens(inputs[1], self.kind)
        return FunctionOp(add_to_prefix, {"prefix": tokens.prefix})


def _check_prefix(new: Tokens, tokens: Tokens, what: str) -> None:
    if new.length != tokens.prefix or new.dim != tokens.dim:
        raise ShapeError(
            f"{what}: {new} cannot stand for the {tokens.prefix} prefix token(s) of {tokens}"
        )


@register
class MergePrefix(Block):
    """Replace the prefix tokens of the second input by the first input (same count)."""

    kind: Literal["merge_prefix"] = "merge_prefix"
    role = "structural"
    arity = 2
    patch_tokens_from = 1  # the sequence's patches pass through

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        new = expect_tokens(inputs[0], self.kind + " (first input: the new prefix tokens)")
        tokens = expect_tokens(inputs[1], self.kind + " (second input: the sequence)")
        _check_prefix(new, tokens, self.kind)
        return self, tokens

    def build(self, *inputs: TensorType) -> FunctionOp:
        tokens = expect_tokens(inputs[1], self.kind)
        return FunctionOp(replace_prefix, {"prefix": tokens.prefix})
