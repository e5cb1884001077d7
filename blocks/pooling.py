"""Pooling into one vector: the class token (ViT §3.1), the mean of the patch tokens
(global average pooling; SimpleViT arXiv:2205.01580, CPVT-GAP §3.3), or the mean of a
feature map over its positions (ResNet's global pool, He et al. arXiv:1512.03385 §3.4;
BoTNet and VT end their CNN stages with it)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
from pydantic import Field

from vitgraph.block import Block, FunctionOp
from vitgraph.errors import ShapeError
from vitgraph.registry import deprecated_alias, register
from vitgraph.shapes import TensorType, Vector, expect_image, expect_tokens


def take_token(x: torch.Tensor, *, index: int) -> torch.Tensor:
    return x[:, index]


def mean_tokens(x: torch.Tensor, *, skip: int) -> torch.Tensor:
    return (x[:, skip:] if skip else x).mean(dim=1)


def mean_positions(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))  # (B, C, H, W) -> (B, C)


@register
class TakeClassToken(Block):
    """The prefix token at ``index`` (0: the class token)."""

    kind: Literal["take_cls"] = "take_cls"
    role = "pooling"
    reads_prefix_only = True
    index: Annotated[int, Field(ge=0)] = 0
    """Which prefix token to take."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        if tokens.prefix <= self.index:
            raise ShapeError(
                f"take_cls needs prefix token {self.index}, but receives {tokens} "
                f"with {tokens.prefix} prefix token(s)",
                field="index",
                hint="add a cls_token node before the encoder, or use mean_pool",
            )
        return self, Vector(tokens.dim)

    def build(self, *inputs: TensorType):
        return FunctionOp(take_token, {"index": self.index})


@register
class MeanPool(Block):
    """Mean over the patch tokens (prefix tokens excluded unless ``include_prefix``)."""

    kind: Literal["mean_pool"] = "mean_pool"
    role = "pooling"
    include_prefix: bool = False
    """Average the class/distillation tokens too."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        if tokens.patches == 0 and not self.include_prefix:
            raise ShapeError(f"mean_pool has no patch tokens to average in {tokens}")
        return self, Vector(tokens.dim)

    def build(self, *inputs: TensorType):
        tokens = expect_tokens(inputs[0], self.kind)
        return FunctionOp(mean_tokens, {"skip": 0 if self.include_prefix else tokens.prefix})


@register
class GlobalAvgPool(Block):
    """Mean of a feature map over its spatial positions: ``(C, H, W) -> (C,)``."""

    kind: Literal["global_avg_pool"] = "global_avg_pool"
    role = "pooling"

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        return self, Vector(expect_image(inputs[0], self.kind).channels)

    def build(self, *inputs: TensorType) -> FunctionOp:
        return FunctionOp(mean_positions)


deprecated_alias(
    "bot_global_pool", "global_avg_pool", "the same pooling, one kind for every family"
)
