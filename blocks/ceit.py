"""CeiT's blocks (Yuan et al., arXiv:2103.11816): the image-to-tokens stem (§3.1: conv +
BN + max-pool, then patches of the low-level feature map), the locally-enhanced
feed-forward (§3.2 LeFF: pointwise expand, depthwise conv on the patch grid, pointwise
back, each with BN; the class token bypasses it) and the layer-wise class-token
attention (§3.3 LCA: the last layer's class token attends over every layer's).

Module names follow the official code (coeusguo/ceit ``ceit_model.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.block import Block, Fold, FunctionOp, batchnorm_pairs
from vitgraph.blocks._attention_common import attend, merge_heads, split_fused, split_heads
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import (
    Image,
    TensorType,
    Tokens,
    conv_out,
    expect_grid,
    expect_image,
    expect_tokens,
)
from vitgraph.vocabulary import Activation, DropRate, PosInt, activation, per_head, scaled_width


@register
class ImageToTokens(Block):
    """I2T (§3.1): conv (no bias) + BN + max-pool on the image, then a ``patch``×``patch``
    conv with stride ``patch`` on that feature map (CeiT: 7×7 s2, 3×3 s2 pool, 4×4)."""

    kind: Literal["image_to_tokens"] = "image_to_tokens"
    role = "tokenizer"
    weight_init = "keep"  # CeiT code: conv and BN at PyTorch's defaults
    dim: PosInt
    """Token width."""
    patch: PosInt = 4
    """Patch side on the pooled feature map."""
    channels: PosInt = 64
    """Width of the stem conv."""
    kernel: PosInt = 7
    """Stem conv kernel side (padding kernel // 2)."""
    stride: PosInt = 2
    """Stem conv stride."""
    pool: Annotated[int, Field(ge=0)] = 3
    """Max-pool window (stride 2, padding 1); 0 for none."""

    def _pooled(self, image: Image) -> tuple[int, int]:
        rows, cols = (
            conv_out(s, self.kernel, self.stride, self.kernel // 2)
            for s in (image.height, image.width)
        )
        if self.pool:
            rows, cols = conv_out(rows, self.pool, 2, 1), conv_out(cols, self.pool, 2, 1)
        return rows, cols

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        rows, cols = self._pooled(image)
        if rows < self.patch or cols < self.patch:
            raise ShapeError(
                f"patch {self.patch} is larger than the {rows}x{cols} feature map "
                f"the stem makes of the {image.height}x{image.width} image",
                field="patch",
            )
        if rows % self.patch or cols % self.patch:  # the patch conv would drop the rest
            side, left = (
                (rows, rows % self.patch) if rows % self.patch else (cols, cols % self.patch)
            )
            raise ShapeError(
                f"patch {self.patch} must divide the {rows}x{cols} feature map the "
                f"stem makes of the {image.height}x{image.width} image ({side} "
                f"leaves {left})",
                field="patch",
                hint=f"use an image side that is a multiple of "
                f"{self.stride * (2 if self.pool else 1) * self.patch}",
            )
        return self, Tokens(self.dim, (rows // self.patch, cols // self.patch))

    def build(self, *inputs: TensorType) -> nn.Module:
        image = expect_image(inputs[0], self.kind)
        return I2T(
            image.channels, self.channels, self.kernel, self.stride, self.pool, self.patch, self.dim
        )

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        return batchnorm_pairs(module, ("backbone.bn", "backbone.conv"))


class I2T(nn.Module):
    def __init__(
        self, channels: int, stem: int, kernel: int, stride: int, pool: int, patch: int, dim: int
    ) -> None:
        super().__init__()
        self.backbone = nn.Sequential()
        self.backbone.add_module(
            "conv", nn.Conv2d(channels, stem, kernel, stride, kernel // 2, bias=False)
        )
        self.backbone.add_module("bn", nn.BatchNorm2d(stem))
        if pool:
            self.backbone.add_module("maxpool", nn.MaxPool2d(pool, 2, 1))
        self.proj = nn.Conv2d(stem, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(x)).flatten(2).transpose(1, 2)  # (B, N, dim)


@register
class LocallyEnhancedFeedForward(Block):
    """LeFF (§3.2): the patch tokens, laid out on their grid, go through 1×1 conv + BN +
    act, depthwise k×k conv + BN + act, 1×1 conv + BN; prefix tokens pass unchanged."""

    kind: Literal["leff"] = "leff"
    role = "mlp"
    weight_init = "keep"  # CeiT code: LeFF's convs and BNs at PyTorch's defaults
    ratio: Annotated[float, Field(gt=0)] = 4.0
    """Hidden width as a multiple of the token width."""
    kernel: PosInt = 3
    """Depthwise conv kernel side (odd, so the grid keeps its size)."""
    act: Activation = "gelu"
    """Activation after the first two convs."""
    bn: bool = True
    """BatchNorm after each conv."""
    groups: PosInt | None = None
    """Groups of the k×k conv; default: its width (depthwise, as in the paper)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        expect_grid(tokens, self.kind)
        if self.kernel % 2 == 0:
            raise ShapeError(
                f"kernel {self.kernel} must be odd to keep the grid's size", field="kernel"
            )
        hidden = scaled_width(tokens.dim, self.ratio)
        groups = self.groups or hidden
        if hidden % groups:
            raise ShapeError(
                f"groups {groups} must divide the {hidden} channels of the "
                f"{self.kernel}x{self.kernel} conv ({tokens.dim} x ratio "
                f"{self.ratio})",
                field="groups",
                hint=f"omit groups for a depthwise conv ({hidden} groups)",
            )
        return self.model_copy(update={"groups": groups}), tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        assert tokens.grid is not None
        assert self.groups is not None
        return LeFF(
            tokens.dim,
            int(tokens.dim * self.ratio),
            self.kernel,
            self.act,
            self.bn,
            tokens.grid,
            tokens.prefix,
            self.groups,
        )

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        return batchnorm_pairs(module, ("bn1", "conv1"), ("bn2", "conv2"), ("bn3", "conv3"))


class LeFF(nn.Module):
    def __init__(
        self,
        dim: int,
        hidden: int,
        kernel: int,
        act: str,
        bn: bool,
        grid: tuple[int, int],
        prefix: int,
        groups: int,
    ) -> None:
        super().__init__()
        self.grid, self.prefix = grid, prefix
        self.conv1 = nn.Conv2d(dim, hidden, 1)
        self.conv2 = nn.Conv2d(hidden, hidden, kernel, 1, kernel // 2, groups=groups)
        self.conv3 = nn.Conv2d(hidden, dim, 1)
        self.act = activation(act)
        self.bn1 = nn.BatchNorm2d(hidden) if bn else nn.Identity()
        self.bn2 = nn.BatchNorm2d(hidden) if bn else nn.Identity()
        self.bn3 = nn.BatchNorm2d(dim) if bn else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prefix, patches = x[:, : self.prefix], x[:, self.prefix :]
        x = patches.transpose(1, 2).unflatten(2, self.grid)  # (B, D, rows, cols)
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        x = self.bn3(self.conv3(x)).flatten(2).transpose(1, 2)  # (B, N, D)
        return torch.cat([prefix, x], dim=1)


def stack_class_tokens(*layers: torch.Tensor) -> torch.Tensor:
    return torch.stack([x[:, 0] for x in layers], dim=1)  # (B, layers, D)


@register
class StackClassTokens(Block):
    """The class token of each input (one per encoder layer, in order) as a sequence
    (§3.3: the input of layer-wise class-token attention)."""

    kind: Literal["stack_cls"] = "stack_cls"
    role = "structural"
    arity = None

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        dims = set()
        for k, x in enumerate(inputs):
            tokens = expect_tokens(x, f"{self.kind} (input {k})")
            if not tokens.prefix:
                raise ShapeError(f"stack_cls input {k} has no class token ({tokens})")
            dims.add(tokens.dim)
        if len(dims) > 1:
            raise ShapeError(f"stack_cls inputs have different widths {sorted(dims)}")
        return self, Tokens(dims.pop(), None, 0, count=len(inputs))

    def build(self, *inputs: TensorType) -> FunctionOp:
        return FunctionOp(stack_class_tokens)


def last_token(x: torch.Tensor) -> torch.Tensor:
    return x[:, -1:]


@register
class LastToken(Block):
    """The last token alone, as a one-token sequence (LCA's residual stream)."""

    kind: Literal["last_token"] = "last_token"
    role = "structural"

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        return self, Tokens(tokens.dim, None, 0, count=1)

    def build(self, *inputs: TensorType) -> FunctionOp:
        return FunctionOp(last_token)


@register
class LastTokenAttention(Block):
    """LCA attention (§3.3): only the last token queries; keys and values come from every
    token. One fused ``qkv`` Linear (its query rows used for the last token only)."""

    kind: Literal["lca_attention"] = "lca_attention"
    role = "attention"
    weight_init = "trunc_normal_linear"  # CeiT code: _init_weights
    heads: PosInt
    """Number of heads."""
    qkv_bias: bool = True
    """Bias in the qkv projection."""
    attn_drop: DropRate = 0.0
    """Dropout on the attention weights."""
    proj_drop: DropRate = 0.0
    """Dropout after the output projection."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        per_head(tokens.dim, self.heads)
        return self, Tokens(tokens.dim, None, 0, count=1)

    def build(self, *inputs: TensorType) -> nn.Module:
        dim = expect_tokens(inputs[0], self.kind).dim
        return LCAttention(dim, self.heads, self.qkv_bias, self.attn_drop, self.proj_drop)


class LCAttention(nn.Module):
    def __init__(
        self, dim: int, heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float
    ) -> None:
        super().__init__()
        self.dim, self.heads, self.attn_drop = dim, heads, attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.qkv.bias
        q = F.linear(
            x[:, -1:], self.qkv.weight[: self.dim], None if bias is None else bias[: self.dim]
        )
        kv = F.linear(x, self.qkv.weight[self.dim :], None if bias is None else bias[self.dim :])
        q = split_heads(q, self.heads)  # (B, H, 1, d)
        k, v = split_fused(kv, 2, self.heads)  # each (B, H, N, d)
        x = attend(q, k, v, self.attn_drop, self.training)  # (B, H, 1, d)
        return self.proj_drop(self.proj(merge_heads(x)))
