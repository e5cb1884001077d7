"""CrossViT blocks (Chen et al. 2021, arXiv:2103.14899): cross-attention fusion of two
branches through their class tokens (§3.3, Eq. 5-8) and the † models' three-conv
patch stem (§4.1, "multi_conv" in the official code).

In the fusion, a branch's class token is projected to the other branch's width
(LN → GELU → Linear), attends as the only query over [itself, the other branch's
patch tokens], is added back (residual, no FFN) and projected back to its own width.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.blocks._attention_common import attend, merge_heads, split_heads
from vitgraph.blocks.structural import DropPath
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, conv_out, expect_image, expect_tokens
from vitgraph.vocabulary import Activation, DropPathRate, DropRate, PosInt, activation, per_head


@register
class CrossAttentionFusion(Block):
    """Inputs: this branch's tokens and the other branch's tokens (each with one class
    token first). Output: this branch's tokens with the class token updated by attending
    over the other branch's patches."""

    kind: Literal["cross_attention_fusion"] = "cross_attention_fusion"
    role = "attention"
    weight_init = "trunc_normal_linear"  # timm CrossVit._init_weights
    arity = 2
    heads: PosInt
    """Heads of the cross attention (it runs at the other branch's width)."""
    qkv_bias: bool = True
    """Bias in the q, k and v projections."""
    attn_drop: DropRate = 0.0
    """Dropout on the attention weights."""
    proj_drop: DropRate = 0.0
    """Dropout after the output projection."""
    drop_path: DropPathRate = 0.0
    """Stochastic depth on the attention branch."""
    norm_eps: Annotated[float, Field(gt=0)] = 1e-6
    """Epsilon of the LayerNorms."""
    act: Activation = "gelu"
    """Activation inside the width projections."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        own = expect_tokens(inputs[0], self.kind + " (first input: this branch)")
        other = expect_tokens(inputs[1], self.kind + " (second input: the other branch)")
        for name, tokens in (("this branch", own), ("the other branch", other)):
            if tokens.prefix != 1:
                raise ShapeError(
                    f"cross-attention fusion reads one class token from "
                    f"{name}, but it has {tokens.prefix} prefix tokens ({tokens})",
                    hint="add a cls_token node to each branch",
                )
        why = " (the cross attention runs at that width)"
        per_head(other.dim, self.heads, "the other branch's width", why)
        return self, own

    def build(self, *inputs: TensorType) -> nn.Module:
        own, other = inputs
        assert isinstance(own, Tokens) and isinstance(other, Tokens)
        return ClassTokenFusion(
            own.dim,
            other.dim,
            self.heads,
            self.qkv_bias,
            self.attn_drop,
            self.proj_drop,
            self.drop_path,
            self.norm_eps,
            self.act,
        )


def _projection(dim: int, out: int, eps: float, act: str) -> nn.Sequential:
    """LN → act → Linear, indexed 0, 1, 2 like the official code's nn.Sequential."""
    return nn.Sequential(nn.LayerNorm(dim, eps=eps), activation(act), nn.Linear(dim, out))


class CrossAttention(nn.Module):
    """The class token (first position) as the only query over all tokens (Eq. 5-6)."""

    def __init__(
        self, dim: int, heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float
    ) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.attn_drop = attn_drop
        self.wq = nn.Linear(dim, dim, bias=qkv_bias)
        self.wk = nn.Linear(dim, dim, bias=qkv_bias)
        self.wv = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.wq(x[:, :1]), self.heads)  # (B, H, 1, d)
        k = split_heads(self.wk(x), self.heads)  # (B, H, N, d)
        v = split_heads(self.wv(x), self.heads)
        out = attend(q, k, v, self.attn_drop, self.training)
        return self.proj_drop(self.proj(merge_heads(out)))  # (B, 1, C)


class ClassTokenFusion(nn.Module):
    def __init__(
        self,
        dim: int,
        other_dim: int,
        heads: int,
        qkv_bias: bool,
        attn_drop: float,
        proj_drop: float,
        drop_path: float,
        eps: float,
        act: str,
    ) -> None:
        super().__init__()
        self.proj = _projection(dim, other_dim, eps, act)  # f^l: to the other width
        self.norm1 = nn.LayerNorm(other_dim, eps=eps)
        self.attn = CrossAttention(other_dim, heads, qkv_bias, attn_drop, proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()
        self.revert = _projection(other_dim, dim, eps, act)  # g^l: back to this width

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        cls = self.proj(x[:, :1])  # (B, 1, D_other)
        joint = torch.cat([cls, other[:, 1:]], dim=1)  # (B, 1 + N_other, D_other)
        cls = cls + self.drop_path(self.attn(self.norm1(joint)))
        return torch.cat([self.revert(cls), x[:, 1:]], dim=1)  # (B, 1 + N, D)


# kernel, stride, padding of the three convs of the † stem, per patch size (official code)
_STEMS = {12: ((7, 4, 3), (3, 3, 0), (3, 1, 1)), 16: ((7, 4, 3), (3, 2, 1), (3, 2, 1))}


@register
class MultiConvEmbed(Block):
    """The † models' patch embedding: three convolutions with ReLUs (widths dim/4, dim/2,
    dim) whose strides multiply to the patch size, instead of one strided conv."""

    kind: Literal["multi_conv_embed"] = "multi_conv_embed"
    role = "tokenizer"
    weight_init = "trunc_normal_linear"  # timm CrossVit._init_weights (convs default)
    patch: Literal[12, 16]
    """Patch size the stem replaces (12 or 16, as in the paper)."""
    dim: PosInt
    """Token width."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        if self.dim % 4:
            raise ShapeError(
                f"dim {self.dim} must be divisible by 4 (the stem's first conv is dim/4 wide)",
                field="dim",
            )
        rows, cols = image.height, image.width
        for kernel, stride, padding in _STEMS[self.patch]:
            rows, cols = (
                conv_out(rows, kernel, stride, padding),
                conv_out(cols, kernel, stride, padding),
            )
        if rows <= 0 or cols <= 0:
            raise ShapeError(
                f"the {image.height}x{image.width} image is too small for the "
                f"patch-{self.patch} stem",
                field="patch",
            )
        return self, Tokens(self.dim, (rows, cols))

    def build(self, *inputs: TensorType) -> nn.Module:
        image = expect_image(inputs[0], self.kind)
        return ConvStem(image.channels, self.dim, self.patch)


class ConvStem(nn.Module):
    def __init__(self, channels: int, dim: int, patch: int) -> None:
        super().__init__()
        widths = (channels, dim // 4, dim // 2, dim)
        layers: list[nn.Module] = []
        for k, (kernel, stride, padding) in enumerate(_STEMS[patch]):
            if k:
                layers.append(nn.ReLU())
            layers.append(nn.Conv2d(widths[k], widths[k + 1], kernel, stride, padding))
        self.proj = nn.Sequential(*layers)  # indices 0, 2, 4 hold the convs, as in timm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, rows*cols, dim)
