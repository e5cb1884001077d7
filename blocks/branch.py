"""Merging parallel branches: the mean of their outputs (CrossViT arXiv:2103.14899
§3.3: the logits of the two branches' heads are averaged)."""

from __future__ import annotations

from typing import Literal, Self

import torch

from vitgraph.block import Block, FunctionOp
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType


def mean_of(*xs: torch.Tensor) -> torch.Tensor:
    return torch.stack(xs, dim=0).mean(dim=0)


@register
class Average(Block):
    """Element-wise mean of two or more inputs of the same shape."""

    kind: Literal["average"] = "average"
    role = "structural"
    arity = None

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        if len(inputs) < 2:
            raise ShapeError(
                f"average merges two or more branches, but receives {len(inputs)}",
                hint="name every branch in inputs",
            )
        first = inputs[0]
        for other in inputs[1:]:
            if type(other) is not type(first) or other.shape != first.shape:
                raise ShapeError(
                    f"cannot average {first} and {other}: every branch must give the same shape",
                    hint="give each branch its own head with the same number of classes",
                )
        return self, first

    def build(self, *inputs: TensorType):
        return FunctionOp(mean_of)
