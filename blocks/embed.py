"""Patch embeddings: an image becomes a grid of tokens.

ViT (arXiv:2010.11929 §3.1) flattens non-overlapping P×P patches and projects them
linearly, which is a convolution with kernel = stride = P. PiT (arXiv:2103.16302 §3.2)
uses the same conv with a stride smaller than the kernel (overlapping patches).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
import torch.nn.functional as F
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
    dynamic_pad: bool = False
    """Pad the image on the right and bottom to a multiple of ``patch`` before projecting
    (timm's ``dynamic_img_pad``): any size runs, the grid counting the partial patches."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], "patch_embed")
        stride = self.stride or self.patch
        if self.dynamic_pad:
            if stride != self.patch or self.padding or self.patch_norm:
                raise ShapeError(
                    "dynamic_pad pads to a patch multiple for non-overlapping patches "
                    "projected by the convolution (stride = patch, no padding, no patch_norm)",
                    field="dynamic_pad",
                )
            rows, cols = -(-image.height // self.patch), -(-image.width // self.patch)
            kind = Tokens(self.dim, (rows, cols))
            return self, kind if self.flatten else Image(self.dim, rows, cols)
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
            self.dynamic_pad,
        )


@torch.fx.wrap
def pad_to_multiple(x: torch.Tensor, patch: int) -> torch.Tensor:
    """``x`` (B, C, H, W) zero-padded on the right and bottom to sides ``patch`` divides,
    as timm's ``PatchEmbed`` under ``dynamic_img_pad`` (a leaf of a symbolic trace)."""
    pad_h = (patch - x.shape[-2] % patch) % patch
    pad_w = (patch - x.shape[-1] % patch) % patch
    return F.pad(x, (0, pad_w, 0, pad_h))


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
        dynamic_pad: bool = False,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride, padding, bias=bias)
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()
        self.flatten = flatten
        self.pad_to = patch if dynamic_pad else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_to:
            x = pad_to_multiple(x, self.pad_to)  # (B, C, H', W'), multiples of the patch
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
