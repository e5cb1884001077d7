"""Transformer in Transformer blocks (Han et al. 2021, arXiv:2103.00112).

Each 16x16 patch is cut into "words" (§3.1: a 7x7 stride-4 conv gives 4x4 words of
width c per patch, plus a word position table shared by all patches). Words travel as
one token stream ``(B, patches * words, c)``; the inner transformer attends within
each patch's group of words, and each layer adds the flattened words' projection to
the patch tokens (Eq. 4), the class token excepted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.blocks._attention_common import attend, merge_heads, split_fused, split_heads
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, expect_image, expect_tokens
from vitgraph.vocabulary import DropRate, PosInt, per_head


@register
class PixelEmbed(Block):
    """Image → words: every ``patch``×``patch`` patch becomes ⌈patch/stride⌉² words of
    width ``dim`` (conv 7x7, stride ``stride``, padding 3, on each patch), plus a learned
    word position table shared by the patches. ``legacy`` convolves the whole image
    first and then cuts it (the original release)."""

    kind: Literal["tnt_pixel_embed"] = "tnt_pixel_embed"
    role = "tokenizer"
    weight_init = "trunc_normal_linear"  # timm TNT._init_weights (conv default)
    no_weight_decay = frozenset({"pixel_pos"})  # as timm's TNT
    patch: PosInt = 16
    """Patch side in pixels."""
    dim: PosInt = 24
    """Word width (the paper's c)."""
    stride: PosInt = 4
    """Stride of the word conv."""
    legacy: bool = False
    """Convolve the image, then cut it into patches (timm's tnt_s_legacy)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        for side in (image.height, image.width):
            if side % self.patch:
                raise ShapeError(
                    f"patch {self.patch} must divide the {image.height}x"
                    f"{image.width} image it receives",
                    field="patch",
                )
        side = -(-self.patch // self.stride)
        patches = (image.height // self.patch) * (image.width // self.patch)
        return self, Tokens(self.dim, None, count=patches * side * side)

    def build(self, *inputs: TensorType) -> nn.Module:
        image = expect_image(inputs[0], self.kind)
        return WordEmbed(
            image.channels,
            image.height,
            image.width,
            self.patch,
            self.dim,
            self.stride,
            self.legacy,
        )


class WordEmbed(nn.Module):
    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        patch: int,
        dim: int,
        stride: int,
        legacy: bool,
    ) -> None:
        super().__init__()
        self.grid = (height // patch, width // patch)
        self.patch, self.dim, self.legacy = patch, dim, legacy
        self.side = -(-patch // stride)  # words per patch side
        self.proj = nn.Conv2d(channels, dim, kernel_size=7, padding=3, stride=stride)
        self.pixel_pos = nn.Parameter(torch.empty(1, dim, self.side, self.side))
        nn.init.trunc_normal_(self.pixel_pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (rows, cols), p = self.grid, self.patch
        if self.legacy:
            x = self.proj(x)  # (B, c, H/stride, W/stride), then cut into side x side
            p = self.side
        # (B, C, rows*p, cols*p) -> (B*patches, C, p, p), patches row-major
        x = x.unflatten(2, (rows, p)).unflatten(4, (cols, p)).permute(0, 2, 4, 1, 3, 5)
        x = x.reshape(-1, x.shape[3], p, p)
        if not self.legacy:
            x = self.proj(x)  # (B*patches, c, side, side)
        x = x + self.pixel_pos
        x = x.flatten(2).transpose(1, 2)  # (B*patches, words, c)
        return x.reshape(-1, rows * cols * self.side * self.side, self.dim)


@register
class GroupedAttention(Block):
    """TNT's attention (separate qk and v projections). With ``group`` > 0 the tokens
    attend only within consecutive groups of that size: the inner transformer, where a
    group is one patch's words."""

    kind: Literal["tnt_attention"] = "tnt_attention"
    role = "attention"
    weight_init = "trunc_normal_linear"  # timm TNT._init_weights
    heads: PosInt
    """Number of heads."""
    group: Annotated[int, Field(ge=0)] = 0
    """Tokens per independent group (0: one group of all tokens)."""
    qkv_bias: bool = False
    """Bias in the qk and v projections."""
    attn_drop: DropRate = 0.0
    """Dropout on the attention weights."""
    proj_drop: DropRate = 0.0
    """Dropout after the output projection."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        if self.group and tokens.length % self.group:
            raise ShapeError(
                f"group {self.group} must divide the {tokens.length} tokens it receives",
                field="group",
            )
        per_head(tokens.dim, self.heads)
        return self, tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        return QkVAttention(
            tokens.dim,
            self.heads,
            self.group or tokens.length,
            tokens.length,
            self.qkv_bias,
            self.attn_drop,
            self.proj_drop,
        )

    def fused_projections(self, module: Any) -> list[tuple[str, ...]]:
        """qk and v read the same tokens: one matmul at inference."""
        return [("qk", "v")] if isinstance(module, QkVAttention) else []


class QkVAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        group: int,
        length: int,
        qkv_bias: bool,
        attn_drop: float,
        proj_drop: float,
    ) -> None:
        super().__init__()
        self.heads, self.head_dim, self.group, self.length = heads, dim // heads, group, length
        self.attn_drop = attn_drop
        self.qk = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = x.shape[-1]
        x = x.reshape(-1, self.group, dim)  # (B*groups, group, C)
        q, k = split_fused(self.qk(x), 2, self.heads)  # each (B*groups, H, group, d)
        v = split_heads(self.v(x), self.heads)
        out = attend(q, k, v, self.attn_drop, self.training)
        out = self.proj_drop(self.proj(merge_heads(out)))
        return out.reshape(-1, self.length, dim)  # (B, L, C)


@register
class WordProjection(Block):
    """Flatten each patch's words and project them to the patch width (Eq. 4): with one
    input (the words) it makes the first patch tokens; with two (words, patch tokens) it
    adds the projection to the patch tokens after their prefix."""

    kind: Literal["tnt_word_projection"] = "tnt_word_projection"
    role = "tokenizer"
    weight_init = "trunc_normal_linear"  # timm TNT._init_weights
    arity = None
    words: PosInt = 16
    """Words per patch."""
    dim: PosInt | None = None
    """Patch width; default: the patch tokens' (second input)."""
    bias: bool = True
    """Bias of the projection."""
    per_word_norm: bool = False
    """LayerNorm each word before flattening (legacy) instead of the flattened patch."""
    out_norm: bool = True
    """LayerNorm after the projection."""
    norm_eps: Annotated[float, Field(gt=0)] = 1e-5
    """Epsilon of the LayerNorms."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        words = expect_tokens(inputs[0], self.kind + " (first input: the words)")
        if len(inputs) > 2:
            raise ShapeError(
                f"tnt_word_projection takes the words and optionally the patch "
                f"tokens, but receives {len(inputs)} inputs"
            )
        if words.length % self.words:
            raise ShapeError(
                f"words {self.words} must divide the {words.length} word tokens it receives",
                field="words",
            )
        patches = words.length // self.words
        if len(inputs) == 1:
            if self.dim is None:
                raise ShapeError(
                    "dim is required when there are no patch tokens to add to", field="dim"
                )
            return self, Tokens(self.dim, None, count=patches)
        target = expect_tokens(inputs[1], self.kind + " (second input: the patch tokens)")
        if target.patches != patches or (self.dim is not None and self.dim != target.dim):
            raise ShapeError(
                f"{words.length} words in groups of {self.words} make {patches} "
                f"patches, but the patch tokens are {target}",
                field="words",
            )
        return self.model_copy(update={"dim": target.dim}), target

    def build(self, *inputs: TensorType) -> nn.Module:
        words = expect_tokens(inputs[0], self.kind)
        assert self.dim is not None
        prefix = expect_tokens(inputs[1], self.kind).prefix if len(inputs) > 1 else None
        return FlattenWords(
            words.dim,
            self.words,
            self.dim,
            self.bias,
            self.per_word_norm,
            self.out_norm,
            self.norm_eps,
            prefix,
        )


class FlattenWords(nn.Module):
    def __init__(
        self,
        dim: int,
        words: int,
        out: int,
        bias: bool,
        per_word_norm: bool,
        out_norm: bool,
        eps: float,
        prefix: int | None,
    ) -> None:
        super().__init__()
        self.words, self.prefix, self.per_word_norm = words, prefix, per_word_norm
        self.norm1_proj = nn.LayerNorm(dim if per_word_norm else dim * words, eps=eps)
        self.proj = nn.Linear(dim * words, out, bias=bias)
        self.norm2_proj = nn.LayerNorm(out, eps=eps) if out_norm else nn.Identity()

    def forward(self, words: torch.Tensor, patches: torch.Tensor | None = None):
        if self.per_word_norm:
            words = self.norm1_proj(words)
        x = words.reshape(words.shape[0], -1, self.words * words.shape[-1])  # (B, N, w*c)
        if not self.per_word_norm:
            x = self.norm1_proj(x)
        x = self.norm2_proj(self.proj(x))  # (B, N, D)
        if patches is None:
            return x
        if self.prefix:
            return torch.cat([patches[:, : self.prefix], patches[:, self.prefix :] + x], dim=1)
        return patches + x
