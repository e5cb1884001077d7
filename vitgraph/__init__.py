"""vitgraph: vision transformers declared as YAML graphs of typed blocks.

``load`` validates a spec (nothing allocated), ``Graph.build`` compiles it into a fresh
``torch.nn.Module``, ``Graph.summary`` counts params and MACs on the meta device.
"""

from typing import Any

from vitgraph.diff import diff
from vitgraph.errors import SpecError
from vitgraph.graph import Graph
from vitgraph.interop.checkpoints import load_weights
from vitgraph.pipeline import build, load
from vitgraph.weights import WeightsError, save_weights

__all__ = [
    "Graph",
    "SpecError",
    "WeightsError",
    "build",
    "diff",
    "from_hf",
    "from_timm",
    "load",
    "load_weights",
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
    # ``vitgraph.train(...)``: the training package, imported on first use
    if name == "train":
        import vitgraph.train as train_package

        return train_package
    raise AttributeError(f"module 'vitgraph' has no attribute {name!r}")
