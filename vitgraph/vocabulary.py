"""The shared parameter vocabulary of every block kind (timm's names and meanings).

One definition each of the field types blocks declare (``PosInt``, ``Rate``,
``DropRate``, ``DropPathRate``, ``Activation``), the markers core reads off a field
(``TrainingOnly``, ``StochasticDepth``), the head-width rule of the attention kinds
(``head_width``, ``per_head``) and the names of the weight-init schemes
(``vitgraph.init`` implements them). A block file imports these instead of declaring its
own copy, so a spec's ``heads``, ``attn_drop`` or ``act`` means one thing everywhere.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import BaseModel, Field

from vitgraph.errors import ShapeError
from vitgraph.shapes import Tokens

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class TrainingOnly:
    """Field marker: the value acts only in training (dropout and stochastic-depth rates).

    It changes neither the parameters nor the function at inference, so summaries leave it
    out of their cache key and ``vitgraph diff`` lists it apart."""


TRAINING_ONLY = TrainingOnly()


@dataclass(frozen=True)
class StochasticDepth:
    """Field marker: the value is a stochastic-depth (drop-path) rate.

    A spec's ``stochastic_depth:`` schedule sets every field so marked (``vitgraph.spec
    .expand``), and an entry that writes one itself keeps its own rates."""


STOCHASTIC_DEPTH = StochasticDepth()

PosInt = Annotated[int, Field(gt=0)]
"""A positive integer (a width, a count, a kernel side)."""
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]
"""A probability in [0, 1)."""
DropRate = Annotated[float, Field(ge=0.0, lt=1.0), TRAINING_ONLY]
"""A dropout or stochastic-depth probability in [0, 1): acts in training only."""
DropPathRate = Annotated[float, Field(ge=0.0, lt=1.0), TRAINING_ONLY, STOCHASTIC_DEPTH]
"""A stochastic-depth probability in [0, 1): acts in training only, and a spec's
``stochastic_depth:`` schedule sets it."""

Activation = Literal["gelu", "gelu_tanh", "quick_gelu", "relu", "silu", "hardswish", "tanh"]
"""An activation by name (``vitgraph.vocabulary.activation`` builds it)."""
ACTIVATIONS: tuple[str, ...] = get_args(Activation)


def activation(name: str, inplace: bool = False) -> nn.Module:
    """The activation module named ``name`` (one of ``Activation``; built by
    ``vitgraph.layers``, imported here on first use so the vocabulary needs no torch).
    ``inplace``: see ``vitgraph.layers.activation_module``."""
    from vitgraph.layers import activation_module

    return activation_module(name, inplace)


#: the weight-init schemes a block kind or a spec's ``init:`` may name (vitgraph.init)
INIT_SCHEMES = (
    "trunc_normal_linear",
    "trunc_normal_all",
    "conv_fan_out",
    "bn_zero_last",
    "kaiming_fan_out",
    "torch_default",
    "lecun_normal",
    "xavier_uniform",
    "xavier_uniform_normal_bias",
    "uniform_fan_avg_0.2",
    "keep",
)


def is_training_only(metadata: list[Any]) -> bool:
    """Whether a field's metadata carries the ``TrainingOnly`` marker."""
    return any(isinstance(item, TrainingOnly) for item in metadata)


def is_stochastic_depth(metadata: list[Any]) -> bool:
    """Whether a field's metadata carries the ``StochasticDepth`` marker."""
    return any(isinstance(item, StochasticDepth) for item in metadata)


@functools.cache
def stochastic_depth_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a params model (a block kind's, a composite's) that are
    stochastic-depth rates, in declaration order."""
    return tuple(
        name for name, info in model.model_fields.items() if is_stochastic_depth(info.metadata)
    )


def head_width(dim: int | None, heads: int, head_dim: int | None, tokens: Tokens) -> int:
    """The width of each head for ``tokens``: ``head_dim`` when given, else the token width
    over ``heads`` (which must divide it); a given ``dim`` must be the tokens' width."""
    if dim is not None and dim != tokens.dim:
        raise ShapeError(
            f"dim {dim} does not match the {tokens.dim}-wide tokens it receives",
            field="dim",
            hint="omit dim to take it from the input",
        )
    if head_dim is not None:
        return head_dim
    return per_head(tokens.dim, heads, also=", or set head_dim")


def per_head(width: int, heads: int, what: str = "the token width", also: str = "") -> int:
    """``width // heads``, for a kind whose heads split a width evenly; ``what`` names the
    width in the error, ``also`` ends its hint (another fix, or why)."""
    if width % heads:
        raise ShapeError(
            f"heads {heads} must divide {what} {width}",
            field="heads",
            hint="use heads from {fits}" + also,
            fits=[d for d in range(1, min(width, 32) + 1) if width % d == 0],
        )
    return width // heads


def divisors(n: int) -> str:
    """The divisors of ``n`` up to 32, for hints."""
    return ", ".join(str(d) for d in range(1, min(n, 32) + 1) if n % d == 0)


def scaled_width(width: int, ratio: float, field: str = "ratio", what: str = "hidden") -> int:
    """``int(width * ratio)``, the width a ratio gives (an MLP's hidden layer), refused
    when it rounds down to no unit at all."""
    scaled = int(width * ratio)
    if scaled < 1:
        raise ShapeError(
            f"{field} {ratio:g} of width {width} leaves no {what} unit (int({width} x "
            f"{ratio:g}) = {scaled})",
            field=field,
            hint=f"set {field} to at least 1/{width}",
        )
    return scaled
