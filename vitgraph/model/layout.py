"""Where timm's model API cuts a compiled model, read from its validated spec.

Nothing here knows a kind by name, and nothing is guessed from kinds: the cut follows
the inferred tensor types. The features are what the model turns into vectors (the
tokens or maps entering each node that outputs a vector from something else: a global
pooling, a head on tokens; one per branch for CrossViT); the head is everything after
them. The features are laid out as the kind that produced them declares
(``feature_layout``: Swin's NHWC maps, PiT's prefix tokens) only while they are still
what that kind produced: the type must be unchanged since (a class token added after
Swin stages ends the NHWC layout) and fit the layout, and a layout that keeps part of
the tokens (PiT's) only feeds a head that reads nothing else. The classifiers are the
heads with a ``classifier`` rule; the checkpoint units are the repeat instances
(``blocks.3``) and composite nodes used once. ``api_problems`` says, at build time, what
of the API a validated graph could not serve (an output computed before the features),
as located problems.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from vitgraph.compiler import META_ID
from vitgraph.errors import Problem
from vitgraph.ir import INPUT, Node, Validated
from vitgraph.shapes import Image, Tokens, Vector
from vitgraph.spec.catalog import registry


@dataclass(frozen=True)
class FeatureFormat:
    """How a reference lays out ``forward_features``'s tensor, when it differs from our
    tokens: ``out(x, **keywords(tokens_type))`` makes its layout from ours, ``back``
    (same keywords) undoes it before the head, or is None when the head reads the
    reference's layout as it is (then only heads that read what it keeps may follow);
    ``fits`` says which token types the layout can take."""

    out: Callable[..., torch.Tensor]
    keywords: Callable[[Tokens], dict[str, Any]]
    back: Callable[..., torch.Tensor] | None = None
    fits: Callable[[Tokens], bool] = lambda tokens: True
    #: ``out`` on the grid of each input of a dynamic-size model:
    #: ``(x, image, stride=, pad=)`` (None: the layout needs no grid)
    input_out: Callable[..., torch.Tensor] | None = None


def to_nhwc(x: torch.Tensor, *, grid: tuple[int, int]) -> torch.Tensor:
    return x.unflatten(1, grid)


def grid_of_input(image: torch.Tensor, stride: tuple[int, int], pad: bool) -> tuple[int, int]:
    """The grid of ``image`` at ``stride``: its sides over the stride, rounded up where
    the model ``pad``s (a padded patch embedding, Swin's patch merging of odd sides)."""
    up = (stride[0] - 1, stride[1] - 1) if pad else (0, 0)
    return (image.shape[-2] + up[0]) // stride[0], (image.shape[-1] + up[1]) // stride[1]


def to_input_nhwc(
    x: torch.Tensor, image: torch.Tensor, *, stride: tuple[int, int], pad: bool
) -> torch.Tensor:
    """``to_nhwc`` on the grid of this input (a dynamic size)."""
    return x.unflatten(1, grid_of_input(image, stride, pad))


def from_nhwc(x: torch.Tensor, *, grid: tuple[int, int]) -> torch.Tensor:
    return x.flatten(1, 2)


def prefix_only(x: torch.Tensor, *, prefix: int) -> torch.Tensor:
    return x[:, :prefix]


#: the layouts a kind may declare as its ``feature_layout``
FEATURE_LAYOUTS: dict[str, FeatureFormat] = {
    # (B, H, W, C) maps (timm's output_fmt NHWC): patch tokens on a grid, nothing else
    "nhwc": FeatureFormat(
        to_nhwc,
        lambda t: {"grid": t.grid},
        from_nhwc,
        fits=lambda t: t.grid is not None and t.prefix == 0,
        input_out=to_input_nhwc,
    ),
    # the prefix tokens only, normed (the heads read nothing else)
    "prefix_tokens": FeatureFormat(
        prefix_only, lambda t: {"prefix": t.prefix}, fits=lambda t: t.prefix > 0
    ),
}


#: a dynamic-size model's declared grids, each with its stride over the input and
#: whether the model rounds it up
InputGrids = dict[tuple[int, int], tuple[tuple[int, int], bool]]


def input_grids(graph: Validated) -> InputGrids:
    """The grids a dynamic-size model reads off each input (empty for a model of one
    input size): those of the nodes whose params say ``dynamic``. A node with a
    ``stride`` (Swin's window attention and patch merging) reads its input's grid at that
    stride, rounded up; one without (a position table resized per input) its own grid,
    at the declared image's stride, rounded up where it says ``dynamic_pad``."""
    grids: InputGrids = {}
    image = graph.input_type
    if not isinstance(image, Image):  # ids, sequences: no grid to read off
        return grids
    for node in graph.nodes:
        if not getattr(node.params, "dynamic", False):
            continue
        stride = getattr(node.params, "stride", None)
        kind = graph.type_of(node.inputs[0] if stride else node.id)
        if not isinstance(kind, Tokens) or kind.grid is None:
            continue
        if stride:
            grids.setdefault(kind.grid, ((stride, stride), True))
        else:
            step = (image.height // kind.grid[0], image.width // kind.grid[1])
            grids.setdefault(kind.grid, (step, bool(getattr(node.params, "dynamic_pad", False))))
    return grids


def emit_layout(
    graph: fx.Graph,
    fmt: FeatureFormat,
    value: fx.Node,
    kind: Tokens,
    grids: InputGrids,
) -> fx.Node:
    """``fmt.out`` of ``value`` in ``graph``: on the grid of the input (``graph``'s
    placeholder) where the model reads ``kind``'s grid off each input."""
    found = grids.get(kind.grid) if kind.grid is not None else None
    if found is not None and fmt.input_out is not None:
        image = next(n for n in graph.nodes if n.op == "placeholder")
        keywords: dict[str, Any] = {"stride": found[0], "pad": found[1]}
        return graph.call_function(fmt.input_out, (value, image), keywords)
    return graph.call_function(fmt.out, (value,), fmt.keywords(kind))


@dataclass
class Layout:
    """Where the API cuts a model, read from its validated spec."""

    features: list[str]  # spec nodes whose outputs forward_features returns (a list if >1)
    classifiers: list[str]  # head nodes producing class logits, in order
    units: dict[str, str]  # spec node id -> its checkpoint unit (innermost repeat instance)
    fx_of: dict[str, fx.Node] = field(repr=False)  # spec node id -> the fx value it computes
    #: per feature: how the reference lays it out (None: our tokens as they are)
    formats: list[FeatureFormat | None] = field(default_factory=list)


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
    features = feature_nodes(graph)
    classifiers = [
        node.id
        for node in graph.nodes
        if type(node.params).role == "head" and type(node.params).classifier_rule() is not None
    ]
    formats = [feature_format(graph, name, features) for name in features]
    return Layout(features, classifiers, _units(graph), fx_of, formats)


def feature_nodes(graph: Validated) -> list[str]:
    """What the model turns into vectors: the non-vector inputs of every node that
    outputs a vector, in order, leaving out those computed from an earlier one (head
    work); the model's output itself when nothing makes a vector (a backbone)."""
    features: list[str] = []
    needed = _needed(graph)
    for node in graph.nodes:
        if node.id not in needed or not isinstance(graph.type_of(node.id), Vector):
            continue
        for name in node.inputs:
            if isinstance(_type(graph, name), Vector) or name in features:
                continue
            if not _after(graph, name, features):
                features.append(name)
    return features or [graph.resolve(graph.outputs[0])]


def feature_format(graph: Validated, name: str, features: list[str]) -> FeatureFormat | None:
    """The layout of feature ``name``: the one declared by the kind (or stage composite)
    that produced it, if the tokens are still what that kind made and the layout fits."""
    declared = _declared(graph, name)
    kind = _type(graph, name)
    fmt = None if declared is None else FEATURE_LAYOUTS[declared]
    if fmt is None or not isinstance(kind, Tokens) or not fmt.fits(kind):
        return None
    if fmt.back is None and not all(
        type(reader.params).reads_prefix_only for reader in _readers(graph, name, features)
    ):
        return None  # the head reads tokens the layout leaves out
    return fmt


def _declared(graph: Validated, name: str) -> str | None:
    """The layout declared where ``name``'s tokens were made: walking back through nodes
    that keep their input's type (a norm, a dropout), the first kind or enclosing
    composite that declares one; None once the type changed on the way."""
    reg = registry()
    by_id = {n.id: n for n in graph.nodes}
    instances = graph.instances
    current = graph.resolve(name)
    while current in by_id:
        node = by_id[current]
        declared = type(node.params).feature_layout
        for unit in node.units():
            composite = reg.composites.get(instances.get(unit, ""))
            declared = declared or (composite.feature_layout if composite else None)
        if declared is not None:
            return declared
        first = node.inputs[0]
        if first == INPUT or _type(graph, first) != _type(graph, current):
            return None
        current = first
    return None


def _type(graph: Validated, name: str) -> Any:
    return graph.inferred.types.get(graph.resolve(name))


def _readers(graph: Validated, name: str, features: list[str]) -> list[Node]:
    """The nodes of the head that read feature ``name`` directly."""
    target = graph.resolve(name)
    head = _head_ids(graph, features)
    return [n for n in graph.nodes if n.id in head and target in n.inputs]


def _needed(graph: Validated) -> set[str]:
    """Every node the model's outputs are computed from."""
    by_id = {n.id: n for n in graph.nodes}
    stack = [graph.resolve(o) for o in graph.outputs]
    seen: set[str] = set()
    while stack:
        current = stack.pop()
        if current in seen or current not in by_id:
            continue
        seen.add(current)
        stack.extend(by_id[current].inputs)
    return seen


def _head_ids(graph: Validated, features: list[str]) -> set[str]:
    """The nodes after the features: needed by the outputs, not by the features."""
    trunk: set[str] = set()
    by_id = {n.id: n for n in graph.nodes}
    stack = [graph.resolve(f) for f in features]
    while stack:
        current = stack.pop()
        if current in trunk or current not in by_id:
            continue
        trunk.add(current)
        stack.extend(by_id[current].inputs)
    return _needed(graph) - trunk


def api_problems(graph: Validated) -> list[Problem]:
    """What of timm's model API this graph could not serve, each located where the spec
    names it. The cut itself always exists (the features are the first tokens the model
    turns into vectors, so every vector the head reads is computed from them); what
    cannot be served is an output computed before the features: ``forward_head`` could
    not return it."""
    features = feature_nodes(graph)
    targets = {graph.resolve(f) for f in features}
    head = _head_ids(graph, features)
    problems = []
    written = graph.source.document.outputs or graph.outputs
    for name, target in zip(written, graph.outputs, strict=True):
        if target in head or target in targets:
            continue
        where, key = graph.expanded.tap_marks.get(name, (graph.node(target).where, name))
        problems.append(
            Problem(
                where,
                key,
                f"output '{name}' is computed before the features "
                f"({', '.join(features)}), so forward_head could not return it",
                f"name '{name}' under features: (Graph.build(features=True) returns the "
                "taps), or output what the head computes",
            )
        )
    return problems


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


class _Cache(dict):
    """A model's Layout and compiled plans, kept in the model's ``__dict__`` (it dies with
    the model: a global weak-keyed table could not free a model, since the plans' fx
    nodes refer back to it). A copy or a pickle of the model starts empty: its plans
    would name the original's nodes."""

    owner = 0  # id() of the model it belongs to: a shallow copy does not share it

    def __deepcopy__(self, memo: dict[int, Any]) -> _Cache:
        return _Cache()

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (_Cache, ())


def cache(model: nn.Module) -> dict[Any, Any]:
    found = model.__dict__.get("_vitgraph_cache")
    if not isinstance(found, _Cache) or found.owner != id(model):
        found = model.__dict__["_vitgraph_cache"] = _Cache()
        found.owner = id(model)
    return found


def cached_layout(model: fx.GraphModule) -> Layout:
    entry = cache(model)
    if "layout" not in entry:
        entry["layout"] = layout(model)
    return entry["layout"]
