"""The spec file's top-level schema (pydantic), and the reserved keys of a graph entry.

Graph entries stay plain dicts here: their parameters may be expressions, so they are
validated per block kind only after the expand phase has evaluated them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic_core import PydanticCustomError

from vitgraph.suggest import did_you_mean
from vitgraph.vocabulary import INIT_SCHEMES, PosInt

FORMAT_VERSION = 1

#: keys of a graph entry that are not block parameters
NODE_KEYS = ("id", "kind", "inputs", "repeat", "at", "doc", "when", "stochastic_depth")


class InputSpec(BaseModel):
    """What the model takes: an image (``size``, ``channels``), or a sequence of integer
    ids (``ids``, ``vocab``: a generative model's palette tokens)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    channels: PosInt = 3
    """Input channels (images)."""
    size: int | list[int] | None = None
    """Image side in pixels, or [height, width]."""
    ids: PosInt | None = None
    """Sequence length of an integer-id input (1024 for a 32x32 image in raster order)."""
    vocab: PosInt | None = None
    """Number of distinct ids of an integer-id input (the palette size)."""
    grid: list[PosInt] | None = None
    """[rows, cols] of the image an id sequence comes from (default: a square of ids)."""
    extra: dict[str, Literal["mask"]] = {}
    """Optional extra inputs the model takes by keyword, by name and type: ``{pixel_mask:
    mask}`` is a boolean valid-pixel map of the image (HF's convention: True = pixel, False
    = padding). Graph entries read one by its name in ``inputs:``; when the caller omits
    it the reading block receives None (every pixel valid)."""

    @model_validator(mode="after")
    def _one_kind_of_input(self) -> InputSpec:
        if self.ids is None and self.size is None:
            raise PydanticCustomError(
                "input_kind", "the input needs size (an image) or ids and vocab (a sequence)"
            )
        if self.ids is not None and self.size is not None:
            raise PydanticCustomError(
                "input_kind",
                "the input is an image (size) or a sequence (ids), not both",
            )
        if self.ids is not None and self.vocab is None:
            raise PydanticCustomError(
                "input_kind", "an id sequence input needs vocab (the number of distinct ids)"
            )
        if self.ids is None and (self.vocab is not None or self.grid is not None):
            raise PydanticCustomError(
                "input_kind", "vocab and grid describe an id sequence: give ids too"
            )
        return self


class DataConfig(BaseModel):
    """Pre-processing the model expects (timm's ``pretrained_cfg`` data keys)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    mean: list[float] = [0.485, 0.456, 0.406]
    std: list[float] = [0.229, 0.224, 0.225]
    crop_pct: float = 0.875
    interpolation: str = "bicubic"


class StochasticDepthSchedule(BaseModel):
    """timm's stochastic-depth rule, once for the whole graph: the drop-path rates grow
    linearly over the layers, ``torch.linspace(0, rate, layers)``.

    A layer is a repeat or composite instance that holds drop-path rates (an encoder
    layer), counted in graph order across stages; every rate inside layer k of L is
    ``rate * k / (L - 1)``. An entry that writes a drop-path param keeps its own rates;
    ``stochastic_depth: false`` on an entry leaves it out, and ``stochastic_depth:
    {layer: k}`` on an entry of a composite makes it row k of that composite instance
    (parallel branches share rows, as CrossViT's do)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    rate: float | str
    """The last layer's drop-path rate, in [0, 1): a number or an expression ($drop_path_rate)."""


class SpecDocument(BaseModel):
    """A vitgraph spec file."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    vitgraph: int
    """Spec format version (this vitgraph reads version 1)."""
    name: str
    """Family name, e.g. ``vit``."""
    paper: str = ""
    """The paper the architecture comes from."""
    default: str | None = None
    """Variant used when none is given (the paper's smallest model)."""
    input: dict[str, Any]
    """The input: an image ``{channels: 3, size: 224}``, or integer ids ``{ids: 1024,
    vocab: 512}`` (values may be expressions)."""
    args: dict[str, Any] = {}
    """Named hyper-parameters the graph refers to as ``$name`` or ``${expression}``."""
    variants: dict[str, dict[str, Any]] = {}
    """Paper model names mapped to the args they change."""
    data: DataConfig = DataConfig()
    """Pre-processing the model expects."""
    init: dict[str, str] = {}
    """Init scheme per block kind, over the kind's own (``{peg: conv_fan_out}``).

    For a family whose reference initialises a shared kind differently (``vitgraph.init``).
    """
    pretrained: dict[str, str] = {}
    """Where each variant's published weights live: ``timm:<model>.<tag>`` (timm's hub
    loading, then ``from_timm``) or ``hf:<repo>`` (transformers' ``from_pretrained``,
    then ``from_hf``); ``create_model(..., pretrained=True)`` and ``vitgraph build
    --pretrained`` read it."""
    stochastic_depth: StochasticDepthSchedule | None = None
    """Stochastic depth as timm sets it: drop-path rates growing linearly from 0 to
    ``rate`` over the layers (``{rate: $drop_path_rate}``)."""
    graph: list[dict[str, Any]]
    """The blocks, in order; an entry without ``inputs`` takes the previous one."""
    outputs: list[str] | None = None
    """Output node ids (default: the last node)."""
    features: list[str] | None = None
    """Feature taps for dense prediction (node ids)."""

    @field_validator("init")
    @classmethod
    def _known_schemes(cls, value: dict[str, str]) -> dict[str, str]:
        for kind, scheme in value.items():
            if scheme not in INIT_SCHEMES:
                raise PydanticCustomError(
                    "init_scheme",
                    "unknown init scheme '{scheme}' for kind '{kind}'{maybe}; known: {known}",
                    {
                        "scheme": scheme,
                        "kind": kind,
                        "known": ", ".join(INIT_SCHEMES),
                        "maybe": did_you_mean(scheme, list(INIT_SCHEMES)),
                    },
                )
        return value
