"""vitgraph: vision transformers declared as YAML graphs of typed blocks.

``load`` validates a spec (nothing allocated), ``Graph.build`` compiles it into a fresh
``torch.nn.Module``, ``Graph.summary`` counts params and MACs on the meta device.

The public names are imported on first use (PEP 562), so ``import vitgraph`` and the
commands that need no model (``vitgraph --help``, ``list``, ``schema``) do not import
torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and editors; at run time see __getattr__
    from vitgraph.diffing import diff
    from vitgraph.errors import SpecError
    from vitgraph.graph import Graph
    from vitgraph.interop.checkpoints import load_weights
    from vitgraph.interop.conv import attention_from_conv
    from vitgraph.interop.create import create_model
    from vitgraph.passes import optimize
    from vitgraph.pipeline import build, load
    from vitgraph.weights import WeightsError, save_weights

#: public name -> the module that defines it
_EXPORTS = {
    "Graph": "vitgraph.graph",
    "SpecError": "vitgraph.errors",
    "WeightsError": "vitgraph.weights.report",
    "attention_from_conv": "vitgraph.interop.conv",
    "build": "vitgraph.pipeline",
    "create_model": "vitgraph.interop.create",
    "diff": "vitgraph.diffing",
    "load": "vitgraph.pipeline",
    "load_weights": "vitgraph.interop.checkpoints",
    "optimize": "vitgraph.passes",
    "save_weights": "vitgraph.weights.format",
}

__all__ = [
    "Graph",
    "SpecError",
    "WeightsError",
    "attention_from_conv",
    "build",
    "create_model",
    "diff",
    "from_hf",
    "from_timm",
    "load",
    "load_weights",
    "optimize",
    "save_weights",
    "train",
]


def from_timm(model: Any) -> Any:
    """The vitgraph model of a timm model's architecture, with its weights loaded."""
    from vitgraph.interop.timm import from_timm as convert

    return convert(model)


def from_hf(model: Any) -> Any:
    """The vitgraph model of a HuggingFace transformers model, with its weights loaded."""
    from vitgraph.interop.hf import from_hf as convert

    return convert(model)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value
    if name == "train":  # ``vitgraph.train(...)``: the training package is callable
        return importlib.import_module("vitgraph.train")
    raise AttributeError(f"module 'vitgraph' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
