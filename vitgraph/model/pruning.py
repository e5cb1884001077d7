"""Cutting a compiled model in place, as timm's ``prune_intermediate_layers`` and
``reset_classifier(0, '')`` do: the fx graph is rewritten and the modules, parameters and
buffers it no longer reads are dropped, and the model's validated spec is cut the same
way, so every part of the model API (layout, features, head, intermediates) reads the
new model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from torch import fx, nn

from vitgraph.compiler import META_ID
from vitgraph.ir import Inferred
from vitgraph.model.intermediates import (
    emit_norm,
    final_norm,
    norm_fits,
    take_indices,
    units_or_refuse,
)
from vitgraph.model.layout import cache, cached_layout, emit_layout, graph_of, input_grids
from vitgraph.model.segments import _prune, feature_types
from vitgraph.shapes import Tokens


def _set_spec(
    model: fx.GraphModule, order: list[Any], types: dict[str, Any], outputs: list[str]
) -> None:
    """Give ``model`` the validated spec of ``order`` (its nodes now), so every part of the
    API reads the cut model."""
    spec = graph_of(model)
    kept = {n.id for n in order}
    expanded = dataclasses.replace(
        spec.expanded,
        nodes=[n for n in spec.expanded.nodes if n.id in kept],
        outputs=outputs,
        features=[f for f in spec.features if spec.resolve(f) in kept],
    )
    graph = spec.inferred.graph.subgraph(kept).copy()
    for node in order:  # the edges of rewired inputs
        graph.add_edges_from((name, node.id) for name in node.inputs if name in kept)
    inferred = Inferred(order, types, graph)
    graph_class: Any = type(spec)
    model.vitgraph_graph = graph_class(
        spec.source, spec.variant, spec.overrides, expanded, inferred
    )
    cache(model).clear()


def cut(model: fx.GraphModule, last: str, norm: str | None = None) -> None:
    """Rewrite ``model`` in place to end at node ``last``, followed by the final norm
    ``norm`` when given (applied to ``last``'s output); whatever came after is removed,
    parameters included."""
    spec = graph_of(model)
    lay = cached_layout(model)
    by_id = {n.id: n for n in spec.nodes}
    end = spec.resolve(last)
    kept = _ancestors(by_id, end)
    order = [n for n in spec.nodes if n.id in kept]
    types = dict(spec.inferred.types)
    fx_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    fx_graph.graph_copy(model.graph, env)
    value = env[lay.fx_of[end]]
    outputs = [end]
    if norm is not None and norm != end:
        order.append(dataclasses.replace(by_id[norm], inputs=[end]))
        types[norm] = types[end]
        value = emit_norm(model, fx_graph, env, norm, value)
        value.meta[META_ID] = norm
        outputs = [norm]
    fx_graph.output(value)
    _prune(fx_graph)
    _replace_graph(model, fx_graph)
    _set_spec(model, order, types, outputs)


def bypass(model: fx.GraphModule, old: str, new: str) -> None:
    """Rewrite ``model`` in place so that what read node ``old`` reads ``new`` (of the
    same type) instead; what computed ``old`` from ``new`` is removed."""
    spec = graph_of(model)
    lay = cached_layout(model)
    by_id = {n.id: n for n in spec.nodes}
    old, new = spec.resolve(old), spec.resolve(new)
    dropped = _ancestors(by_id, old) - _ancestors(by_id, new)
    order = [
        dataclasses.replace(n, inputs=[new if i == old else i for i in n.inputs])
        for n in spec.nodes
        if n.id not in dropped
    ]
    fx_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    result = fx_graph.graph_copy(model.graph, env)
    env[lay.fx_of[old]].replace_all_uses_with(env[lay.fx_of[new]])
    before, after = env[lay.fx_of[old]], env[lay.fx_of[new]]
    fx_graph.output(fx.node.map_arg(result, lambda n: after if n is before else n))
    _prune(fx_graph)
    _replace_graph(model, fx_graph)
    _set_spec(model, order, dict(spec.inferred.types), list(spec.outputs))


def _ancestors(by_id: dict[str, Any], target: str) -> set[str]:
    seen: set[str] = set()
    stack = [target]
    while stack:
        current = stack.pop()
        if current in seen or current not in by_id:
            continue
        seen.add(current)
        stack.extend(by_id[current].inputs)
    return seen


def _replace_graph(model: fx.GraphModule, graph: fx.Graph) -> None:
    """Give ``model`` the fx graph ``graph``, dropping every submodule, parameter and
    buffer it no longer reads."""
    model.graph = graph
    model.delete_all_unused_submodules()
    used = {str(n.target) for n in graph.nodes if n.op in ("get_attr", "call_module")}
    for name, _ in list(model.named_parameters()) + list(model.named_buffers()):
        if any(name == u or name.startswith(u + ".") for u in used):
            continue
        owner_path, _, leaf = name.rpartition(".")
        owner: nn.Module = model.get_submodule(owner_path) if owner_path else model
        owner._parameters.pop(leaf, None)
        owner._buffers.pop(leaf, None)
    model.recompile()


def prune_intermediate_layers(
    model: fx.GraphModule,
    indices: int | Sequence[int] = 1,
    prune_norm: bool = False,
    prune_head: bool = True,
) -> list[int]:
    """timm's ``prune_intermediate_layers``: the units after the last one ``indices`` asks
    for are removed; ``prune_head`` removes the head (pooling and classifiers: ``forward``
    then returns the unpooled tokens, as timm's after ``reset_classifier(0, '')``);
    ``prune_norm`` the final norm. As timm's hierarchical models, a model cut before its
    last stage loses its head and final norm too (they are sized for the last stage), and
    so does a model whose head reads more than the units' output (CaiT's class
    attention: its head goes with the units, as timm's ``prune_head``)."""
    units = units_or_refuse(model)
    taken, max_index = take_indices(len(units), indices)
    spec = graph_of(model)
    last = units[max_index]
    norm = final_norm(model)
    if not prune_head and spec.type_of(units[-1]) == spec.type_of(last):
        # a plain model keeps its head: what read the last unit reads the kept one
        bypass(model, units[-1], last)
        if prune_norm and norm is not None:
            bypass(model, norm, spec.node(norm).inputs[0])
    else:
        keep_norm = not prune_norm and norm_fits(spec, norm, last)
        cut(model, last, norm if keep_norm else None)
        _lay_out_output(model)
        model.__dict__["_vitgraph_num_classes"] = 0
        model.__dict__["vitgraph_cut"] = True
    return taken


def remove_head(model: fx.GraphModule) -> None:
    """``reset_classifier(0, '')``: the pooling and the classifiers go; ``forward`` returns
    the features as ``forward_features`` does."""
    lay = cached_layout(model)
    if len(lay.features) != 1:
        raise NotImplementedError(
            f"reset_classifier(0, ''): this model has {len(lay.features)} feature outputs "
            f"({', '.join(lay.features)}); remove the head by a graph edit"
        )
    cut(model, graph_of(model).resolve(lay.features[0]))
    _lay_out_output(model)
    model.__dict__["_vitgraph_num_classes"] = 0
    model.__dict__["vitgraph_cut"] = True  # the graph no longer is the spec's


def _lay_out_output(model: fx.GraphModule) -> None:
    """A model cut to its features returns them as ``forward_features`` lays them out, as
    timm's (Swin's NHWC maps, PiT's class tokens)."""
    lay = cached_layout(model)
    fmt, kind = lay.formats[0], feature_types(model)[0]
    if fmt is None or not isinstance(kind, Tokens):
        return
    output = next(n for n in model.graph.nodes if n.op == "output")
    with model.graph.inserting_before(output):
        grids = input_grids(graph_of(model))
        laid = emit_layout(model.graph, fmt, output.args[0], kind, grids)
    output.args = (laid,)
    model.recompile()
