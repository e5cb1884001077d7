"""Patch embeddings: an image becomes a grid of tokens.

ViT (arXiv:2010.11929 §3.1) flattens non-overlapping P×P patches and projects them
linearly, which is a convolution with kernel = stride = P. PiT (arXiv:2103.16302 §3.2)
uses the same conv with a stride smaller than the kernel (overlapping patches).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import Image, TensorType, Tokens, conv_out, expect_image
from vitgraph.vocabulary import PosInt


@register
class PatchEmbed(Block):
    """Split the image into patches and project each to ``dim`` (a strided convolution)."""

    kind: Literal["patch_embed"] = "patch_embed"
    role = "tokenizer"
    weight_init = "keep"  # timm ViT: conv at PyTorch's default; Twins/PVT specs override
    patch: PosInt
    """Patch side in pixels (the conv kernel)."""
    dim: PosInt
    """Token width."""
    stride: PosInt | None = None
    """Step between patches; default: ``patch`` (non-overlapping)."""
    padding: Annotated[int, Field(ge=0)] = 0
    """Zero padding of the image (overlapping patches only)."""
    bias: bool = True
    """Bias in the projection."""
    norm: bool = False
    """LayerNorm on the tokens after the projection."""
    norm_eps: float = 1e-5
    """Epsilon of that LayerNorm (and of ``patch_norm``)."""
    patch_norm: bool = False
    """LayerNorm on each flattened patch before a linear projection (vit-pytorch's
    SimpleViT); the projection is then an ``nn.Linear`` over ``(p1 p2 c)``."""
    flatten: bool = True
    """Return tokens; ``false`` returns the projected feature map (a conv stem)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], "patch_embed")
        stride = self.stride or self.patch
        if stride == self.patch and self.padding == 0:
            for side, name in ((image.height, "height"), (image.width, "width")):
                if side % self.patch:
                    raise ShapeError(
                        f"patch {self.patch} must divide the {image.height}x{image.width} image "
                        f"it receives ({name} {side} leaves {side % self.patch})",
                        field="patch",
                        hint=f"use a patch that divides {side}, or resize the input",
                    )
        elif self.patch_norm:
            raise ShapeError(
                "patch_norm needs non-overlapping patches (stride = patch)", field="patch_norm"
            )
        rows = conv_out(image.height, self.patch, stride, self.padding)
        cols = conv_out(image.width, self.patch, stride, self.padding)
        if rows <= 0 or cols <= 0:
            raise ShapeError(
                f"patch {self.patch} with stride {stride} and padding "
                f"{self.padding} leaves no patch of the {image.height}x"
                f"{image.width} image",
                field="patch",
            )
        if not self.flatten:
            return self, Image(self.dim, rows, cols)
        return self, Tokens(self.dim, (rows, cols))

    def build(self, *inputs: TensorType) -> nn.Module:
        image = inputs[0]
        assert isinstance(image, Image)
        if self.patch_norm:
            return LinearPatchEmbed(image.channels, self.patch, self.dim, self.norm, self.norm_eps)
        return ConvPatchEmbed(
            image.channels,
            self.dim,
            self.patch,
            self.stride or self.patch,
            self.padding,
            self.bias,
            self.norm,
            self.norm_eps,
            self.flatten,
        )


class ConvPatchEmbed(nn.Module):
    def __init__(
        self,
        channels: int,
        dim: int,
        patch: int,
        stride: int,
        padding: int,
        bias: bool,
        norm: bool,
        eps: float,
        flatten: bool,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride, padding, bias=bias)
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (B, D, rows, cols)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)  # (B, rows*cols, D)
        return self.norm(x)


class LinearPatchEmbed(nn.Module):
    """LayerNorm over each raw patch, Linear, LayerNorm (vit-pytorch's SimpleViT)."""

    def __init__(self, channels: int, patch: int, dim: int, norm: bool, eps: float) -> None:
        super().__init__()
        self.patch = patch
        patch_dim = channels * patch * patch
        self.patch_norm = nn.LayerNorm(patch_dim, eps=eps)
        self.proj = nn.Linear(patch_dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        x = x.unflatten(2, (-1, p)).unflatten(4, (-1, p))  # (B, C, rows, p1, cols, p2)
        x = x.permute(0, 2, 4, 3, 5, 1).flatten(3).flatten(1, 2)  # (B, rows*cols, p1 p2 c)
        return self.norm(self.proj(self.patch_norm(x)))
