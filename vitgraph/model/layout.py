"""Where timm's model API cuts a compiled model, read from its validated spec.

Nothing here knows a kind by name: the roles come from each block's hooks
(``vitgraph.block``). The features are the tokens entering each global ``pooling`` block
(one that makes a vector; one per branch for CrossViT), laid out as the kind that
produced them declares (``feature_layout``: Swin's NHWC maps, PiT's prefix tokens); the
classifiers are the heads with a ``classifier`` rule; the checkpoint units are the repeat
instances (``blocks.3``) and composite nodes used once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from vitgraph.compiler import META_ID
from vitgraph.ir import INPUT, Validated
from vitgraph.shapes import Tokens, Vector
from vitgraph.spec.catalog import registry


@dataclass(frozen=True)
class FeatureFormat:
    """How a reference lays out ``forward_features``'s tensor, when it differs from our
    tokens: ``out(x, **keywords(tokens_type))`` makes its layout from ours, ``back``
    (same keywords) undoes it before the head, or is None when the head reads the
    reference's layout as it is."""

    out: Callable[..., torch.Tensor]
    keywords: Callable[[Tokens], dict[str, Any]]
    back: Callable[..., torch.Tensor] | None = None


def to_nhwc(x: torch.Tensor, *, grid: tuple[int, int]) -> torch.Tensor:
    return x.unflatten(1, grid)


def from_nhwc(x: torch.Tensor, *, grid: tuple[int, int]) -> torch.Tensor:
    return x.flatten(1, 2)


def prefix_only(x: torch.Tensor, *, prefix: int) -> torch.Tensor:
    return x[:, :prefix]


#: the layouts a kind may declare as its ``feature_layout``
FEATURE_LAYOUTS: dict[str, FeatureFormat] = {
    # (B, H, W, C) maps (timm's output_fmt NHWC)
    "nhwc": FeatureFormat(to_nhwc, lambda t: {"grid": t.grid}, from_nhwc),
    # the prefix tokens only, normed (the heads read nothing else)
    "prefix_tokens": FeatureFormat(prefix_only, lambda t: {"prefix": t.prefix}),
}


@dataclass
class Layout:
    """Where the API cuts a model, read from its validated spec."""

    features: list[str]  # spec nodes whose outputs forward_features returns (a list if >1)
    classifiers: list[str]  # head nodes producing class logits, in order
    units: dict[str, str]  # spec node id -> its checkpoint unit (innermost repeat instance)
    fx_of: dict[str, fx.Node] = field(repr=False)  # spec node id -> the fx value it computes
    fmt: FeatureFormat | None = None  # how the reference lays the features out


def graph_of(model: nn.Module) -> Validated:
    graph = getattr(model, "vitgraph_graph", None)
    if not isinstance(graph, Validated):
        raise TypeError("this model was not built by vitgraph (no vitgraph_graph)")
    return graph


def layout(model: fx.GraphModule) -> Layout:
    graph = graph_of(model)
    tagged = {n.meta[META_ID]: n for n in model.graph.nodes if META_ID in n.meta}
    placeholder = next(n for n in model.graph.nodes if n.op == "placeholder")
    fx_of: dict[str, fx.Node] = {INPUT: placeholder}
    for node in graph.nodes:  # a node built as Identity is its first input
        fx_of[node.id] = tagged.get(node.id) or fx_of[node.inputs[0]]
    features: list[str] = []
    classifiers = []
    for node in graph.nodes:
        cls = type(node.params)
        # a global pooling (to a vector) or a head reads the features; a pooling that
        # keeps tokens (PiT's stage transitions) is inside the trunk
        if (cls.role == "head" and not features) or (
            cls.role == "pooling" and isinstance(graph.type_of(node.id), Vector)
        ):
            if node.inputs[0] not in features and not _after(graph, node.inputs[0], features):
                features.append(node.inputs[0])
        if cls.role == "head" and cls.classifier_rule() is not None:
            classifiers.append(node.id)
    if not features:  # no pooling or head: the whole model is features
        features = [graph.resolve(graph.outputs[0])]
    return Layout(features, classifiers, _units(graph), fx_of, _format(graph))


def _format(graph: Validated) -> FeatureFormat | None:
    """The feature layout a kind of the graph declares (a stage composite's, or a
    primitive's), if any."""
    reg = registry()
    declared: list[str | None] = []
    for kind, _ in graph.groups.values():
        composite = reg.composites.get(kind)
        declared.append(composite.feature_layout if composite is not None else None)
    declared += [type(node.params).feature_layout for node in graph.nodes]
    name = next((d for d in declared if d is not None), None)
    return None if name is None else FEATURE_LAYOUTS[name]


def _after(graph: Validated, node_id: str, features: list[str]) -> bool:
    """Whether ``node_id`` is computed from one of ``features`` (then it is head work)."""
    by_id = {n.id: n for n in graph.nodes}
    stack, seen = [node_id], set()
    while stack:
        current = stack.pop()
        if current in features:
            return True
        if current in seen or current not in by_id:
            continue
        seen.add(current)
        stack.extend(by_id[current].inputs)
    return False


def _units(graph: Validated) -> dict[str, str]:
    """Checkpoint units: each instance of a repeat (``blocks.3``) and each composite node
    used once (Twins' ``stage1.first``), innermost first."""
    ids = [n.id for n in graph.nodes]
    instances = set()
    for group, (_, count) in graph.groups.items():
        repeated = any(i == f"{group}.0" or i.startswith(f"{group}.0.") for i in ids)
        instances |= {f"{group}.{i}" for i in range(count)} if repeated else {group}
    units: dict[str, str] = {}
    for node in graph.nodes:
        for unit in [node.id, *node.units()]:
            if unit in instances:
                units[node.id] = unit
                break
    return units


#: per model: its Layout and compiled plans (kept out of the module, so deepcopy and
#: state_dict never see them)
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[Any, Any]] = weakref.WeakKeyDictionary()


def cache(model: nn.Module) -> dict[Any, Any]:
    if model not in _CACHE:
        _CACHE[model] = {}
    return _CACHE[model]


def cached_layout(model: fx.GraphModule) -> Layout:
    entry = cache(model)
    if "layout" not in entry:
        entry["layout"] = layout(model)
    return entry["layout"]
