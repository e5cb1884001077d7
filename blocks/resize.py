"""Resizing the input image, for models whose branches see the image at different
sizes (CrossViT arXiv:2103.14899 §3.3: the large-patch branch takes the 240 px image
resized to 224 px, bicubic)."""

from __future__ import annotations

from typing import Literal, Self

import torch
import torch.nn.functional as F

from vitgraph.block import Block, FunctionOp
from vitgraph.registry import register
from vitgraph.shapes import Image, TensorType, expect_image
from vitgraph.vocabulary import PosInt


def resize(x: torch.Tensor, *, size: tuple[int, int], mode: str) -> torch.Tensor:
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


@register
class ResizeImage(Block):
    """Interpolate the image to ``size`` (a side, or [height, width])."""

    kind: Literal["resize_image"] = "resize_image"
    role = "structural"
    size: PosInt | list[PosInt]
    """Target side in pixels, or [height, width]."""
    mode: Literal["bicubic", "bilinear"] = "bicubic"
    """Interpolation (align_corners false, as timm)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        height, width = _pair(self.size)
        return self, Image(image.channels, height, width)

    def build(self, *inputs: TensorType):
        image = expect_image(inputs[0], self.kind)
        size = _pair(self.size)
        if (image.height, image.width) == size:
            from torch import nn

            return nn.Identity()
        return FunctionOp(resize, {"size": size, "mode": self.mode})


def _pair(size: int | list[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (size[0], size[-1])
