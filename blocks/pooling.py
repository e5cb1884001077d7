"""Pooling into one vector: the class token (ViT §3.1), the mean of the patch tokens
(global average pooling; SimpleViT arXiv:2205.01580, CPVT-GAP §3.3), or the mean of a
feature map over its positions (ResNet's global pool, He et al. arXiv:1512.03385 §3.4;
BoTNet and VT end their CNN stages with it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, ClassVar, Literal, Self

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


def max_tokens(x: torch.Tensor, *, skip: int) -> torch.Tensor:
    return (x[:, skip:] if skip else x).amax(dim=1)


def avgmax_tokens(x: torch.Tensor, *, skip: int) -> torch.Tensor:
    x = x[:, skip:] if skip else x
    return 0.5 * (x.amax(dim=1) + x.mean(dim=1))  # timm's 'avgmax', in its order


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


class _TokenReduce(Block):
    """A reduction over the patch tokens (prefix tokens excluded unless
    ``include_prefix``)."""

    role = "pooling"
    include_prefix: bool = False
    """Reduce over the class/distillation/register tokens too."""
    _reduce: ClassVar[Callable[..., torch.Tensor]]

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        if tokens.patches == 0 and not self.include_prefix:
            raise ShapeError(f"{self.kind} has no patch tokens to reduce in {tokens}")
        return self, Vector(tokens.dim)

    def build(self, *inputs: TensorType):
        tokens = expect_tokens(inputs[0], self.kind)
        skip = 0 if self.include_prefix else tokens.prefix
        return FunctionOp(type(self)._reduce, {"skip": skip})


@register
class MeanPool(_TokenReduce):
    """Mean over the patch tokens (prefix tokens excluded unless ``include_prefix``)."""

    kind: Literal["mean_pool"] = "mean_pool"
    _reduce = staticmethod(mean_tokens)


@register
class MaxPool(_TokenReduce):
    """Channel-wise maximum over the patch tokens (timm's ``global_pool='max'``)."""

    kind: Literal["max_pool"] = "max_pool"
    _reduce = staticmethod(max_tokens)


@register
class AvgMaxPool(_TokenReduce):
    """The mean of the average and the maximum over the patch tokens (timm's
    ``global_pool='avgmax'``)."""

    kind: Literal["avgmax_pool"] = "avgmax_pool"
    _reduce = staticmethod(avgmax_tokens)


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
