"""The rest of DeepViT (arXiv:2103.11886; official code zhoudaquan/dvit_repo):

* ``deepvit_stem``: the official ``PatchEmbed_CNN`` of DeepViT-S/L, "following T2T" —
  a 7×7 stride-2 conv and a 3×3 conv (64 channels, BatchNorm + ReLU, no bias), then a
  strided projection of kernel patch/2, so each token still covers patch×patch pixels;
* ``residual_scale`` (in structural.py): the official ``scale_adjustment`` divides each residual
  branch by a
  constant (0.5 in DeepViT-S/L; the branch's LayerNorm input is multiplied by it, which
  ``deepvit_layer`` folds into the LayerNorm's epsilon: LN(a·x; ε) = LN(x; ε/a²)).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from torch import nn

from vitgraph.block import Block, Fold
from vitgraph.blocks._conv_stem import ConvStem, stem_folds, stem_grid
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, expect_image
from vitgraph.vocabulary import PosInt


@register
class DeepVitStem(Block):
    """Two-conv stem (BatchNorm + ReLU) and a strided projection to tokens."""

    kind: Literal["deepvit_stem"] = "deepvit_stem"
    role = "tokenizer"
    weight_init = "keep"  # DeepViT code: PatchEmbed_CNN at PyTorch's defaults
    patch: PosInt
    """Pixels per token side; the stem halves the image, the projection takes patch/2."""
    dim: PosInt
    """Token width."""
    width: PosInt = 64
    """Channels of the two stem convolutions."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        if self.patch % 2:
            raise ShapeError(
                f"patch {self.patch} must be even: the stem halves the image", field="patch"
            )
        rows, cols = stem_grid(image, self.patch)
        if rows <= 0 or cols <= 0:
            raise ShapeError(
                f"patch {self.patch} leaves no token of the {image.height}x{image.width} image",
                field="patch",
            )
        return self, Tokens(self.dim, (rows, cols))

    def build(self, *inputs: TensorType) -> nn.Module:
        image = expect_image(inputs[0], self.kind)
        return ConvStem(image.channels, (self.width,) * 2, self.dim, self.patch // 2)

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        return stem_folds(module)
