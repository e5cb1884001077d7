"""``from_hf``: the vitgraph model of a HuggingFace transformers model, with its weights.

One converter file per transformers class (``vitgraph/interop/hf_<family>.py``, each
``@hf_converter("ClassName")``): it reads the model's config, returns the spec to load
(a shipped spec with overrides, or a spec document) and how HF's keys map to ours. An
option the converter cannot express is refused with a ``SpecError`` naming it and the
model; keys that do not fit are a ``WeightsError``, so the result is never silently
different.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml
from torch import nn

from vitgraph.errors import Location, SpecError
from vitgraph.interop.timm import Reference
from vitgraph.pipeline import load
from vitgraph.weights.loader import load_state, offers_from_state


@dataclass
class HFConversion:
    """What an HF converter returns: the spec (a shipped name with ``overrides``, or a
    document) and the state_dict in our keys."""

    spec: str | dict[str, Any]
    state: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    overrides: dict[str, Any] = field(default_factory=dict)


HFConverter = Callable[[nn.Module], HFConversion]
_CONVERTERS: dict[str, HFConverter] = {}


def hf_converter(*class_names: str) -> Callable[[HFConverter], HFConverter]:
    """Register a converter for transformers model classes (by class name)."""

    def decorate(fn: HFConverter) -> HFConverter:
        for name in class_names:
            if name in _CONVERTERS:
                raise RuntimeError(
                    f"transformers class {name} already has a converter: "
                    f"{_CONVERTERS[name].__module__}"
                )
            _CONVERTERS[name] = fn
        return fn

    return decorate


def load_converters() -> None:
    """Import every ``hf_*`` converter module of this package."""
    package = importlib.import_module("vitgraph.interop")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("hf_"):
            importlib.import_module(f"vitgraph.interop.{info.name}")


def refuse_hf(model: Reference, option: str, why: str = "") -> SpecError:
    """A SpecError for a transformers option vitgraph cannot express."""
    name = type(model).__name__
    return SpecError.at(
        Location(f"<transformers:{name}>"),
        name,
        f"transformers option {option} is not supported by vitgraph yet"
        + (f" ({why})" if why else ""),
        "vitgraph refuses rather than build a different model",
    )


def converter_of(model: Reference) -> HFConverter:
    """The converter of a transformers model's class; an unsupported class is refused."""
    load_converters()
    cls = type(model).__name__
    if cls not in _CONVERTERS:
        known = ", ".join(sorted(_CONVERTERS))
        raise refuse_hf(model, f"model class {cls}", f"supported classes: {known}")
    return _CONVERTERS[cls]


def from_hf(model: Reference) -> nn.Module:
    """Build the vitgraph twin of a transformers ``model`` and load its weights (on the
    reference's device, in its dtype)."""
    cls = type(model).__name__
    conversion = converter_of(model)(model)
    if isinstance(conversion.spec, str):
        graph = load(conversion.spec, overrides=conversion.overrides)
    else:
        graph = load(f"<transformers:{cls}>", text=yaml.safe_dump(conversion.spec))
    first = next(iter(model.parameters()), None)  # built where the reference is, alike
    ours = graph.build() if first is None else graph.build(device=first.device, dtype=first.dtype)
    load_state(
        ours,
        offers_from_state(conversion.state(model.state_dict())),
        fmt="transformers",
        source=f"transformers {cls}",
        what=f"transformers {cls}'s state_dict does not fit the vitgraph model",
    )
    ours.train(model.training)
    return ours
