"""Structural blocks: residual merges, dropout, stochastic depth and LayerScale.

Drop-path (stochastic depth, Huang et al. 2016) drops whole residual branches per
sample; LayerScale (CaiT arXiv:2103.17239 §2.1) scales a branch per channel.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block, FunctionOp
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, Vector, expect_tokens
from vitgraph.vocabulary import DropPathRate, DropRate, PosInt


@register
class Add(Block):
    """Element-wise sum of its inputs (a residual connection)."""

    kind: Literal["add"] = "add"
    arity = 2
    role = "structural"

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        first, second = inputs
        # tokens add to tokens whatever they carry (the Image Transformer's generation
        # order rides on a Tokens subclass); the first input's type passes on
        tokens = isinstance(first, Tokens) and isinstance(second, Tokens)
        same = type(first) is type(second) or tokens
        if first.shape != second.shape or not same:
            raise ShapeError(
                f"cannot add {first} and {second}: shapes "
                f"{_fmt(first.shape)} and {_fmt(second.shape)} differ"
            )
        return self, first

    def build(self, *inputs: TensorType):
        return operator.add


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


class _PassThrough(Block):
    role = "structural"

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        return self, inputs[0]


@register
class Dropout(_PassThrough):
    """Dropout (identity when ``rate`` is 0 or in eval mode)."""

    kind: Literal["dropout"] = "dropout"
    training_only = True
    rate: DropRate = 0.0
    """Probability of zeroing an element."""

    def build(self, *inputs: TensorType) -> nn.Module:
        return nn.Dropout(self.rate) if self.rate else nn.Identity()


@register
class DropPathBlock(_PassThrough):
    """Stochastic depth: drop the whole branch for a sample with probability ``rate``."""

    kind: Literal["drop_path"] = "drop_path"
    training_only = True
    rate: DropPathRate = 0.0
    """Probability of dropping the branch in training."""
    group: PosInt | None = None
    """Drop each run of this many consecutive tokens on its own (TNT §3.1: the inner
    transformer's branch is dropped per patch, as timm's per-patch batch does); null: the
    whole sample at once."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = inputs[0]
        if self.group is not None:
            tokens = expect_tokens(x, self.kind)
            if tokens.prefix or tokens.length % self.group:
                raise ShapeError(
                    f"drop_path groups of {self.group} tokens do not tile {tokens}",
                    field="group",
                )
        return self, x

    def build(self, *inputs: TensorType) -> nn.Module:
        return DropPath(self.rate, self.group) if self.rate else nn.Identity()


class DropPath(nn.Module):
    training_only = True  # an identity at inference (``Block.eval_identities``)

    def __init__(self, rate: float, group: int | None = None) -> None:
        super().__init__()
        self.rate = rate
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = 1.0 - self.rate
        if self.group is None:
            mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
            return x * mask.div_(keep)  # rescale so the expectation is unchanged
        batch, length, dim = x.shape  # one draw per group, in (sample, group) order
        mask = x.new_empty(batch, length // self.group, 1, 1).bernoulli_(keep)
        return (x.unflatten(1, (-1, self.group)) * mask.div_(keep)).flatten(1, 2)

    def extra_repr(self) -> str:
        return f"rate={self.rate}" + (f", group={self.group}" if self.group else "")


@register
class LayerScaleBlock(_PassThrough):
    """Per-channel learned scale of a residual branch (CaiT §2.1); identity when ``init``
    is null."""

    kind: Literal["layer_scale"] = "layer_scale"
    no_weight_decay = True  # CaiT §2.1: the scales are not decayed (timm's no_weight_decay)
    weight_init = "keep"  # build fills init_values
    init: Annotated[float, Field(gt=0)] | None = None
    """Initial value of every channel's scale (CaiT: 1e-5 up to depth 24, 1e-6 beyond)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = inputs[0]
        if not isinstance(x, Tokens | Vector):
            raise ShapeError(f"layer_scale takes tokens or a vector, but receives {x}")
        return self, x

    def build(self, *inputs: TensorType) -> nn.Module:
        x = inputs[0]
        assert isinstance(x, Tokens | Vector)
        return LayerScale(x.dim, self.init) if self.init is not None else nn.Identity()

    def channel_scale(self, module: Any) -> torch.Tensor | None:
        """γ, which folds into the projection before it at inference."""
        return module.gamma if isinstance(module, LayerScale) else None


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


@register
class IdentityBlock(Block):
    """Passes its first input through (a stream's name: CrossViT's ``small``, TNT's
    ``words``). To switch a node off with an arg, give it ``when: $distilled``."""

    kind: Literal["identity"] = "identity"
    arity = None
    role = "structural"

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        return self, inputs[0]

    def build(self, *inputs: TensorType) -> nn.Module:
        return nn.Identity()


def divide(x: torch.Tensor, *, divisor: float) -> torch.Tensor:
    return x / divisor


@register
class ResidualScale(_PassThrough):
    """Divide a residual branch by a constant before it joins the stream: LV-ViT's
    ``skip_lam`` (arXiv:2104.10858 §3) and DeepViT's ``scale_adjustment``; identity at 1."""

    kind: Literal["residual_scale"] = "residual_scale"
    weight_init = "keep"
    divisor: Annotated[float, Field(gt=0)] = 1.0
    """The branch is divided by this before it joins the residual stream."""

    def build(self, *inputs: TensorType):
        if self.divisor == 1.0:
            return nn.Identity()
        return FunctionOp(divide, {"divisor": self.divisor})

    def channel_scale(self, module: Any) -> torch.Tensor | None:
        """1 / divisor, which folds into the projection before it at inference."""
        return torch.tensor(1.0 / self.divisor, dtype=torch.float64)


@register
class PatchDropoutBlock(_PassThrough):
    """Patch dropout (Li et al. 2023 "FLIP" arXiv:2212.00794 §3; Liu et al. 2022
    arXiv:2208.07220): in training each sample keeps a random ``int(N * (1 - rate))`` of
    its N patch tokens (prefix tokens always), so the blocks after it see fewer tokens;
    identity in eval. timm's ``patch_drop_rate``, drawn the way timm draws it (the
    argsort of one normal draw per token), so a seeded run keeps the same tokens."""

    kind: Literal["patch_dropout"] = "patch_dropout"
    training_only = True
    rate: DropRate = 0.0
    """Fraction of the patch tokens dropped per sample in training."""
    ordered: bool = False
    """Keep the kept tokens in their original order (timm's ``ordered``)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        return self, expect_tokens(inputs[0], self.kind)

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        if not self.rate:
            return nn.Identity()
        return PatchDropout(self.rate, tokens.prefix, self.ordered)


class PatchDropout(nn.Module):
    def __init__(self, rate: float, prefix: int, ordered: bool) -> None:
        super().__init__()
        self.rate, self.prefix, self.ordered = rate, prefix, ordered

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        prefix, x = x[:, : self.prefix], x[:, self.prefix :]  # (B, P, D), (B, L, D)
        b, length = x.shape[:2]
        keep = max(1, int(length * (1.0 - self.rate)))
        index = torch.argsort(torch.randn(b, length, device=x.device), dim=-1)[:, :keep]
        if self.ordered:
            index = index.sort(dim=-1)[0]
        x = x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (B, keep, D)
        return torch.cat((prefix, x), dim=1)
