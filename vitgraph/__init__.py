"""vitgraph: vision transformers declared as YAML graphs of typed blocks.

``load`` validates a spec (nothing allocated), ``Graph.build`` compiles it into a fresh
``torch.nn.Module``, ``Graph.summary`` counts params and MACs on the meta device.
"""

from vitgraph.checkpoints import load_weights
from vitgraph.diff import diff
from vitgraph.errors import SpecError
from vitgraph.graph import Graph, build, load
from vitgraph.weights import save_weights

__all__ = [
    "Graph",
    "SpecError",
    "build",
    "diff",
    "from_timm",
    "load",
    "load_weights",
    "save_weights",
    "train",
]


def from_timm(model):
    """The vitgraph model of a timm model's architecture, with its weights loaded."""
    from vitgraph.interop.timm import from_timm as convert

    return convert(model)


def __getattr__(name: str):
    if name == "train":
        import vitgraph.train as train_package

        return train_package
    raise AttributeError(f"module 'vitgraph' has no attribute {name!r}")
