"""LV-ViT's blocks (Jiang et al., "All Tokens Matter: Token Labeling for Training Better
Vision Transformers", arXiv:2104.10858).

* ``lvvit_stem``: the convolutional patch embedding of §3.3 / Table 2 — three convs
  (7x7 stride 2, then two 3x3) with BatchNorm and ReLU, then a strided projection whose
  kernel is half the patch, so each token still covers ``patch x patch`` pixels;
* ``residual_scale`` (in structural.py): "re-scaling the residual" (Table 2, ``skip_lam``),
  every residual
  branch divided by a constant before the addition;
* ``token_label_head``: the auxiliary head on every patch token (§3.1). Training returns
  ``(class_logits, token_logits)`` for the Token Labeling loss; inference returns
  ``class_logits + 0.5 * max over tokens of token_logits`` (the official ``tlt`` code).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block, Classifier, Fold
from vitgraph.blocks._conv_stem import ConvStem, stem_folds, stem_grid
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, Vector, expect_image, expect_tokens, expect_vector
from vitgraph.vocabulary import PosInt


@register
class LvvitStem(Block):
    """Conv stem + strided projection to tokens (LV-ViT §3.3)."""

    kind: Literal["lvvit_stem"] = "lvvit_stem"
    role = "tokenizer"
    weight_init = "keep"  # tlt PatchEmbed4_2: convs and BNs at PyTorch's defaults
    patch: PosInt
    """Pixels per token side; the stem halves the image, the projection takes patch/2."""
    dim: PosInt
    """Token width."""
    width: PosInt = 64
    """Channels of the three stem convolutions."""
    widths: tuple[PosInt, PosInt, PosInt] | None = None
    """Channels of each stem convolution, when they differ (Refiner: 32, 64, 128);
    default: ``width`` for all three."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        if self.patch % 2:
            raise ShapeError(
                f"patch {self.patch} must be even: the stem halves the image and "
                "the projection takes the other half",
                field="patch",
                hint=f"use patch {self.patch - 1} or {self.patch + 1}",
            )
        for side, name in ((image.height, "height"), (image.width, "width")):
            if side % self.patch:
                raise ShapeError(
                    f"patch {self.patch} must divide the {image.height}x"
                    f"{image.width} image it receives ({name} {side} leaves "
                    f"{side % self.patch})",
                    field="patch",
                    hint=f"use a patch that divides {side}, or resize the input",
                )
        rows, cols = stem_grid(image, self.patch)
        return self, Tokens(self.dim, (rows, cols))

    def build(self, *inputs: TensorType) -> nn.Module:
        image = expect_image(inputs[0], self.kind)
        widths = self.widths or (self.width,) * 3
        return ConvStem(image.channels, widths, self.dim, self.patch // 2)

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        return stem_folds(module)


class ClassLogitsOnly(nn.Module):
    """A token-label head reset to 0 classes: the class head's output (now its features)
    passes through; there are no token logits to add."""

    def forward(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return logits


def reset_token_label(
    block: Block, inputs: Sequence[TensorType], classes: int, old: nn.Module
) -> nn.Module:
    """LV-ViT's auxiliary head follows the class head to the new class count (its eval
    output adds the two, so they must agree)."""
    if classes == 0:
        return ClassLogitsOnly()
    made = block.build(Vector(classes), inputs[1])
    made.dense_output = bool(getattr(old, "dense_output", False))
    return made


@register
class TokenLabelHead(Block):
    """LV-ViT's auxiliary classifier on every patch token. Inputs: the class logits and
    the final tokens. Training returns ``(class_logits, token_logits (B, N, classes))``;
    eval returns ``class_logits + weight * token_logits.max(over tokens)``."""

    kind: Literal["token_label_head"] = "token_label_head"
    role = "head"
    objective = "token_labeling"  # training returns (class logits, token logits)
    # it refines the class head's logits and adds no features of its own
    classifier = Classifier(reset_token_label, None)
    weight_init = "keep"  # build draws tlt's TN(0.02) aux_head
    arity = 2
    weight: Annotated[float, Field(ge=0)] = 0.5
    """Weight of the token logits' maximum in the inference output."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        logits = expect_vector(inputs[0], self.kind + " (first input: the class logits)")
        if not isinstance(inputs[1], Tokens):
            raise ShapeError(
                f"token_label_head's second input must be the final tokens, but "
                f"it receives {inputs[1]}",
                hint="use inputs: [head, norm]",
            )
        tokens = inputs[1]
        if tokens.patches == 0:
            raise ShapeError(f"token_label_head needs patch tokens, but receives {tokens}")
        return self, logits

    def build(self, *inputs: TensorType) -> nn.Module:
        logits = expect_vector(inputs[0], self.kind)
        tokens = expect_tokens(inputs[1], self.kind)
        return TokenLabelClassifier(tokens.dim, logits.dim, tokens.prefix, self.weight)


class TokenLabelClassifier(nn.Linear):
    """An ``nn.Linear`` (keys ``aux_head.weight``, as in ``tlt``) that merges at eval.

    ``dense_output = True`` returns both logits in eval too (a token-label teacher)."""

    def __init__(self, dim: int, classes: int, prefix: int, weight: float) -> None:
        super().__init__(dim, classes)
        nn.init.trunc_normal_(self.weight, std=0.02)
        nn.init.zeros_(self.bias)
        self.prefix, self.merge_weight = prefix, weight
        self.dense_output = False

    def forward(self, logits: torch.Tensor, tokens: torch.Tensor):  # type: ignore[override]
        dense = super().forward(tokens[:, self.prefix :])  # (B, N, classes)
        if self.training or self.dense_output:
            return logits, dense
        return logits + self.merge_weight * dense.max(dim=1).values
