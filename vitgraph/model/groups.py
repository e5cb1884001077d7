"""timm's ``group_matcher``: the depth ordinal of every parameter, which layer-wise
learning-rate decay (BEiT §2.4 / timm's ``param_groups_layer_decay``) scales by.

Read off the graph, for any spec: the stem (every node before the first repeat instance)
is layer 0; each innermost repeat instance (``blocks.3``, ``layers.1.blocks.0``) is the
next layer, in execution order, and a node between two instances (Swin's patch merging,
PiT's pooling) belongs to the instance after it, as timm's Swin matcher puts
``layers.i.downsample`` with block 0 of stage i; after the last instance the final norm
joins the last instance (timm's ``(r'^norm', (99999,))``: 99999 means "the group before"),
and everything else — pooling, ``fc_norm``, the classifier — is the head, last (timm's
unmatched names).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import fx

from vitgraph.ir import Validated
from vitgraph.model.layout import cache, graph_of

Ordinal = tuple[float, ...]


def _instances(graph: Validated) -> list[str]:
    """The innermost repeat instances (``layers.0.blocks.1``, not ``layers.0``, which
    holds instances itself)."""
    aliases = set(graph.aliases)
    found = []
    for alias in aliases:
        group, _, index = alias.rpartition(".")
        if group and index.isdigit() and group in aliases:
            found.append(alias)
    return [a for a in found if not any(b.startswith(a + ".") for b in found)]


def node_layers(graph: Validated, final_norm: str | None) -> dict[str, Ordinal]:
    """Every node id's ordinal: (0,) stem, (1, k) the k-th instance (and the final norm
    with the last one), (inf,) the head."""
    instances = _instances(graph)

    def instance_of(node_id: str) -> str | None:
        return next((a for a in instances if node_id.startswith(a + ".")), None)

    layers: dict[str, Ordinal] = {}
    pending: list[str] = []
    current: str | None = None
    index = -1
    for node in graph.nodes:
        inner = instance_of(node.id)
        if inner is None:
            if index < 0:
                layers[node.id] = (0.0,)
            else:
                pending.append(node.id)  # placed by what follows it
            continue
        if inner != current:
            current, index = inner, index + 1
        for waiting in pending:  # between two instances: with the one after it
            layers[waiting] = (1.0, float(index))
        pending = []
        layers[node.id] = (1.0, float(index))
    for node_id in pending:
        layers[node_id] = (1.0, float(index)) if node_id == final_norm else (math.inf,)
    return layers


def group_matcher(model: fx.GraphModule, coarse: bool = False) -> Callable[[str], Ordinal]:
    """timm's ``group_matcher`` as a callable (timm's ``group_with_matcher`` accepts one):
    a parameter name → its ordinal (``coarse`` changes nothing: one unit per layer)."""
    entry = cache(model)
    if "layers" not in entry:
        from vitgraph.model.intermediates import final_norm

        graph = graph_of(model)
        entry["layers"] = node_layers(graph, final_norm(model))
    layers: dict[str, Ordinal] = entry["layers"]

    def ordinal(name: str) -> Ordinal:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # a node's own parameter: its id itself
            found = layers.get(".".join(parts[:cut]))
            if found is not None:
                return found
        return (math.inf,)

    return ordinal


def layer_scales(model: fx.GraphModule, decay: float) -> dict[str, float]:
    """Each parameter's learning-rate factor under layer-wise decay ``decay``: the
    ordinals ranked, the last (the head) at 1, each one before at ``decay`` times the
    one after (timm's ``param_groups_layer_decay``)."""
    matcher = group_matcher(model)
    ordinals = {name: matcher(name) for name, _ in model.named_parameters()}
    ranks = {o: i for i, o in enumerate(sorted(set(ordinals.values())))}
    last = len(ranks) - 1
    return {name: decay ** (last - ranks[o]) for name, o in ordinals.items()}
