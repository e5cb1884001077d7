"""CvT's blocks (Wu et al., arXiv:2103.15808): the convolutional token embedding of each
stage (§3.1: an overlapping strided conv on the previous stage's token map, then a
LayerNorm) and the convolutional projection attention (§3.2: each of q, k, v is a
depthwise conv + BatchNorm on the 2-D token map, strided for k and v, then a Linear).
The class token, present in the last stage only, bypasses the conv projections (§3.2).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block, Fold
from vitgraph.blocks._attention_common import attend, merge_heads, split_heads
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import Image, TensorType, Tokens, conv_out, expect_grid, expect_tokens
from vitgraph.vocabulary import DropRate, PosInt, per_head


@register
class ConvEmbed(Block):
    """Convolutional token embedding (§3.1): a conv on an image or on a grid of tokens
    (prefix-free), then LayerNorm on the resulting tokens."""

    kind: Literal["conv_embed"] = "conv_embed"
    role = "tokenizer"
    weight_init = "trunc_normal_all"  # HF CvtPreTrainedModel._init_weights
    dim: PosInt
    """Output token width."""
    patch: PosInt
    """Conv kernel side."""
    stride: PosInt
    """Conv stride (the grid shrinks by it)."""
    padding: Annotated[int, Field(ge=0)] | None = None
    """Zero padding; default: patch // 2."""
    norm_eps: Annotated[float, Field(gt=0)] = 1e-5
    """Epsilon of the LayerNorm."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        rows, cols = _map_size(inputs[0], self.kind)
        padding = self.patch // 2 if self.padding is None else self.padding
        out = (
            conv_out(rows, self.patch, self.stride, padding),
            conv_out(cols, self.patch, self.stride, padding),
        )
        if min(out) <= 0:
            raise ShapeError(
                f"patch {self.patch} with stride {self.stride} and padding "
                f"{padding} leaves an empty grid from the {rows}x{cols} map it "
                f"receives",
                field="patch",
                hint=f"use a patch of at most {min(rows, cols) + 2 * padding}",
            )
        return self.model_copy(update={"padding": padding}), Tokens(self.dim, out)

    def build(self, *inputs: TensorType) -> nn.Module:
        x = inputs[0]
        assert isinstance(x, Image | Tokens)
        channels = x.channels if isinstance(x, Image) else x.dim
        grid = None if isinstance(inputs[0], Image) else _map_size(inputs[0], self.kind)
        assert self.padding is not None
        return ConvTokenEmbed(
            channels, self.dim, self.patch, self.stride, self.padding, self.norm_eps, grid
        )


def _map_size(x: TensorType, what: str) -> tuple[int, int]:
    if isinstance(x, Image):
        return x.height, x.width
    tokens = expect_tokens(x, what)
    grid = expect_grid(tokens, what)
    if tokens.prefix:
        raise ShapeError(
            f"{what} re-embeds a token map, but receives {tokens} with "
            f"{tokens.prefix} prefix token(s)",
            hint="split the class token off before the next stage",
        )
    return grid


class ConvTokenEmbed(nn.Module):
    def __init__(
        self,
        channels: int,
        dim: int,
        patch: int,
        stride: int,
        padding: int,
        eps: float,
        grid: tuple[int, int] | None,
    ) -> None:
        super().__init__()
        self.grid = grid  # set when the input is tokens on this grid
        self.proj = nn.Conv2d(channels, dim, patch, stride, padding)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grid is not None:
            x = x.transpose(1, 2).unflatten(2, self.grid)  # (B, C, rows, cols)
        x = self.proj(x).flatten(2).transpose(1, 2)  # (B, rows'*cols', dim)
        return self.norm(x)


@register
class ConvProjectionAttention(Block):
    """Multi-head attention whose q, k, v come from depthwise conv + BN projections of the
    token map (§3.2); k and v use ``stride_kv`` (the paper's squeezed projection). Takes
    the ``encoder_layer`` vocabulary (``heads``, ``qkv_bias``, ...)."""

    kind: Literal["conv_attention"] = "conv_attention"
    role = "attention"
    weight_init = "trunc_normal_all"  # HF CvtPreTrainedModel._init_weights
    heads: PosInt
    """Number of heads."""
    head_dim: PosInt | None = None
    """Width of each head; must be dim / heads (accepted for encoder_layer)."""
    kernel: PosInt = 3
    """Depthwise conv kernel side."""
    stride_q: PosInt = 1
    """Stride of the query projection."""
    stride_kv: PosInt = 2
    """Stride of the key and value projections."""
    qkv_bias: bool = True
    """Bias in the q, k, v Linears."""
    proj_bias: bool = True
    """Bias in the output projection."""
    attn_drop: DropRate = 0.0
    """Dropout on the attention weights."""
    proj_drop: DropRate = 0.0
    """Dropout after the output projection."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        rows, cols = expect_grid(tokens, self.kind)
        if tokens.prefix > 1:
            raise ShapeError(
                f"conv_attention lets at most one class token bypass the conv "
                f"projection, but receives {tokens.prefix} prefix tokens"
            )
        head_dim = per_head(tokens.dim, self.heads)
        if self.head_dim is not None and self.head_dim != head_dim:
            raise ShapeError(
                f"head_dim {self.head_dim} must be dim / heads = {head_dim}", field="head_dim"
            )
        pad = self.kernel // 2
        for stride, name in ((self.stride_q, "stride_q"), (self.stride_kv, "stride_kv")):
            if (
                min(
                    conv_out(rows, self.kernel, stride, pad),
                    conv_out(cols, self.kernel, stride, pad),
                )
                <= 0
            ):
                raise ShapeError(
                    f"{name} {stride} leaves no token of the {rows}x{cols} grid", field=name
                )
        return self.model_copy(update={"head_dim": head_dim}), tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        assert tokens.grid is not None
        return ConvAttention(
            tokens.dim,
            self.heads,
            self.kernel,
            self.stride_q,
            self.stride_kv,
            self.qkv_bias,
            self.proj_bias,
            self.attn_drop,
            self.proj_drop,
            tokens.grid,
            tokens.prefix,
        )

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        """Each conv projection's BatchNorm folds into its depthwise conv."""
        return [
            Fold(f"{path}.bn", f"{path}.conv")
            for path, sub in module.named_modules()
            if isinstance(sub, DepthwiseConvBN) and isinstance(sub.bn, nn.BatchNorm2d)
        ]


class DepthwiseConvBN(nn.Module):
    """Depthwise conv (no bias) + BatchNorm on a (B, C, H, W) map (keys ``conv``, ``bn``)."""

    def __init__(self, dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel, stride, kernel // 2, groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).flatten(2).transpose(1, 2)  # (B, N', C)


class ConvAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        kernel: int,
        stride_q: int,
        stride_kv: int,
        qkv_bias: bool,
        proj_bias: bool,
        attn_drop: float,
        proj_drop: float,
        grid: tuple[int, int],
        prefix: int,
    ) -> None:
        super().__init__()
        self.heads, self.grid, self.prefix = heads, grid, prefix
        self.attn_drop = attn_drop
        # §3.2 / official code: the logits are scaled by the full width, not the head width
        self.scale = dim**-0.5
        self.conv_proj_q = DepthwiseConvBN(dim, kernel, stride_q)
        self.conv_proj_k = DepthwiseConvBN(dim, kernel, stride_kv)
        self.conv_proj_v = DepthwiseConvBN(dim, kernel, stride_kv)
        self.proj_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj_k = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj_v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls, patches = x[:, : self.prefix], x[:, self.prefix :]
        fmap = patches.transpose(1, 2).unflatten(2, self.grid)  # (B, C, rows, cols)
        q, k, v = self.conv_proj_q(fmap), self.conv_proj_k(fmap), self.conv_proj_v(fmap)
        if self.prefix:  # the class token skips the conv projection (§3.2)
            q, k, v = (torch.cat([cls, t], dim=1) for t in (q, k, v))
        q = split_heads(self.proj_q(q), self.heads)  # (B, H, N, d)
        k = split_heads(self.proj_k(k), self.heads)  # (B, H, M, d)
        v = split_heads(self.proj_v(v), self.heads)
        x = attend(q, k, v, self.attn_drop, self.training, self.scale)
        return self.proj_drop(self.proj(merge_heads(x)))
