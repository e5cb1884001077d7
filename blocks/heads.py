"""Classifier heads: a linear head, big_vision's pre-logits layer, and DeiT's
distillation head (arXiv:2012.12877 §4: eval averages the class and distillation
heads; training returns both so each gets its own loss)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self

import torch
from pydantic import Field
from torch import fx, nn

from vitgraph.block import LINEAR_CLASSIFIER, Block, Classifier
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Vector, expect_tokens, expect_vector
from vitgraph.vocabulary import DropRate, PosInt

HeadInit = Literal["trunc_normal", "zeros"]


def init_linear(layer: nn.Linear, how: str) -> nn.Linear:
    if how == "zeros":
        nn.init.zeros_(layer.weight)
    else:
        nn.init.trunc_normal_(layer.weight, std=0.02)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


@register
class LinearHead(Block):
    """A linear classifier on a pooled vector."""

    kind: Literal["linear_head"] = "linear_head"
    role = "head"
    classifier = LINEAR_CLASSIFIER
    weight_init = "keep"  # build draws per `init`; PiT/BoTNet/VT specs override
    classes: PosInt
    """Number of classes."""
    bias: bool = True
    """Bias of the classifier."""
    init: HeadInit = "trunc_normal"
    """Weight init (big_vision zero-inits the head)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        expect_vector(inputs[0], self.kind)
        return self, Vector(self.classes)

    def build(self, *inputs: TensorType) -> nn.Module:
        x = expect_vector(inputs[0], self.kind)
        return init_linear(nn.Linear(x.dim, self.classes, bias=self.bias), self.init)


@register
class PreLogits(Block):
    """Linear + tanh before the head (big_vision's ``rep_size``, ViT §3.1's MLP head)."""

    kind: Literal["pre_logits"] = "pre_logits"
    role = "head"
    weight_init = "keep"  # build draws TN(0.02)
    dim: PosInt | None = None
    """Output width; default: the input's."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = expect_vector(inputs[0], self.kind)
        dim = self.dim or x.dim
        return self.model_copy(update={"dim": dim}), Vector(dim)

    def build(self, *inputs: TensorType) -> nn.Module:
        x = expect_vector(inputs[0], self.kind)
        assert self.dim is not None
        return PreLogitsLayer(x.dim, self.dim)


class PreLogitsLayer(nn.Module):
    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.fc = init_linear(nn.Linear(dim, out), "trunc_normal")
        self.act = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


def take_token(x: torch.Tensor, *, index: int) -> torch.Tensor:
    return x[:, index]


class DistilledPassThrough(nn.Module):
    """A distillation head reset to 0 classes: the mean of the class features and the
    distillation token, as timm's ``reset_classifier(0)`` gives."""

    def __init__(self, index: int | None) -> None:
        super().__init__()
        self.index = index  # None: the second input is the distillation features itself
        self.distilled_training = True

    def forward(self, features: torch.Tensor, tokens: torch.Tensor):
        dist = tokens if self.index is None else tokens[:, self.index]
        if self.training and self.distilled_training:
            return features, dist
        return (features + dist) / 2


def reset_distillation(
    block: Block, inputs: Sequence[TensorType], classes: int, old: nn.Module
) -> nn.Module:
    """A new distillation head for ``classes`` (0: the pass-through timm gives), keeping
    the old head's ``distilled_training`` switch."""
    index = int(getattr(block, "index", 1))
    made: Any = (  # a module with a distilled_training switch
        DistilledPassThrough(index) if classes == 0 else block.build(Vector(classes), inputs[1])
    )
    made.distilled_training = bool(getattr(old, "distilled_training", True))
    return made


def _distillation_token(block: Block, args: Sequence[fx.Node], graph: fx.Graph) -> fx.Node:
    return graph.call_function(take_token, (args[1],), {"index": int(getattr(block, "index", 1))})


@register
class DistillationHead(Block):
    """DeiT's second head, on the distillation token. Inputs: the class head's logits and
    the final tokens. Eval returns the mean of both heads; training returns
    ``(class_logits, distillation_logits)`` unless ``set_distilled_training(False)``."""

    kind: Literal["distill_head"] = "distill_head"
    role = "head"
    reads_prefix_only = True
    objective = "distillation"  # training returns (class logits, distillation logits)
    # timm's VisionTransformerDistilled ignores reset_classifier's global_pool: headless,
    # it still returns the mean of the class and distillation tokens
    classifier = Classifier(
        reset_distillation, _distillation_token, features_input=1, keeps_pooling=True
    )
    weight_init = "keep"  # build draws TN(0.02)
    arity = 2
    index: Annotated[int, Field(ge=0)] = 1
    """Position of the distillation token in the prefix."""
    drop: DropRate = 0.0
    """Dropout on the distillation token before its classifier (timm's ``head_drop``,
    applied to each token in turn: the class head's dropout comes first)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        logits = expect_vector(inputs[0], self.kind + " (first input: the class logits)")
        tokens = expect_tokens(inputs[1], self.kind + " (second input: the tokens)")
        if tokens.prefix <= self.index:
            raise ShapeError(
                f"distill_head reads prefix token {self.index}, but its tokens "
                f"have {tokens.prefix} prefix token(s)",
                field="index",
                hint="add a dist_token node after the cls_token",
            )
        return self, logits

    def build(self, *inputs: TensorType) -> nn.Module:
        logits = expect_vector(inputs[0], self.kind)
        tokens = expect_tokens(inputs[1], self.kind)
        return DistilledClassifier(tokens.dim, logits.dim, self.index, self.drop)


class DistilledClassifier(nn.Linear):
    """An ``nn.Linear`` (so its keys are ``head_dist.weight``, as in DeiT) that merges."""

    def __init__(self, dim: int, classes: int, index: int, drop: float = 0.0) -> None:
        super().__init__(dim, classes)
        init_linear(self, "trunc_normal")
        self.index = index
        self.drop = nn.Dropout(drop) if drop else nn.Identity()
        self.distilled_training = True

    def forward(self, logits: torch.Tensor, tokens: torch.Tensor):  # type: ignore[override]
        dist = super().forward(self.drop(tokens[:, self.index]))
        if self.training and self.distilled_training:
            return logits, dist
        return (logits + dist) / 2
