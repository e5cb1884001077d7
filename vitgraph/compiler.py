"""Phase 6, build: a fresh ``torch.fx.GraphModule`` per call.

Each node becomes one ``call_module`` (submodule at the node's own dotted id, so
state_dict keys read like the spec: ``blocks.3.attn.qkv.weight``), one ``call_function``
for parameter-free ops, or a ``get_attr`` + ``call_function`` for tensor-holding blocks
(``cls_token``, ``pos_embed``). Disabled parts (``nn.Identity``) are dropped from the
graph, so ``forward`` is straight-line generated code with no per-node interpretation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch._dynamo  # GraphModule imports it lazily on first use (~2.5 s);
from torch import fx, nn  # paying that at import keeps validate/build timings honest.

from vitgraph.block import FunctionOp, TensorOp
from vitgraph.ir import INPUT, Node
from vitgraph.shapes import TensorType

M = TypeVar("M", bound=fx.GraphModule)

#: fx node meta key naming the spec node a graph node computes (the model API cuts the
#: graph at these)
META_ID = "vitgraph_id"


def _container(root: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    """The module that owns ``dotted``'s last component, creating empty parents."""
    *parents, leaf = dotted.split(".")
    owner = root
    for name in parents:
        child = owner._modules.get(name)
        if child is None:
            child = nn.Module()
            owner.add_module(name, child)
        owner = child
    return owner, leaf


def compile_nodes(
    order: Sequence[Node],
    types: dict[str, TensorType],
    outputs: Sequence[str],
    aliases: dict[str, str],
    model_class: type[M],
    class_name: str = "VitgraphModel",
    extra_inputs: Sequence[str] = (),
) -> M:
    """Build every node's module and wire them into one ``model_class`` (a GraphModule
    subclass: the model services layer gives the one with timm's model API). Each of
    the spec's ``extra_inputs`` (a pixel mask) is an optional argument after the input,
    None when omitted."""
    root = nn.Module()
    graph = fx.Graph()
    env: dict[str, fx.Node] = {INPUT: graph.placeholder("x")}
    for name in extra_inputs:
        env[name] = graph.placeholder(name, default_value=None)
    non_persistent: list[str] = []
    for node in order:
        in_types = [types[name] for name in node.inputs]
        made = node.params.build(*in_types)
        args = tuple(env[name] for name in node.inputs)
        if isinstance(made, nn.Identity):
            env[node.id] = args[0]
        elif isinstance(made, nn.Module):
            owner, leaf = _container(root, node.id)
            owner.add_module(leaf, made)
            env[node.id] = graph.call_module(node.id, args)
            env[node.id].meta[META_ID] = node.id
        elif isinstance(made, TensorOp):
            owner, leaf = _container(root, node.id)
            if isinstance(made.tensor, nn.Parameter):
                owner.register_parameter(leaf, made.tensor)
            else:
                owner.register_buffer(leaf, made.tensor, persistent=made.persistent)
                if not made.persistent:
                    non_persistent.append(node.id)
            tensor = graph.get_attr(node.id)
            tensor.meta[META_ID] = node.id
            env[node.id] = _named(
                graph.call_function(made.fn, (*args, tensor), made.kwargs), node.id
            )
        elif isinstance(made, FunctionOp):
            env[node.id] = _named(graph.call_function(made.fn, args, made.kwargs), node.id)
        elif callable(made):
            env[node.id] = _named(graph.call_function(made, args), node.id)
        else:  # a block's build() broke its contract: a bug in vitgraph, not in the spec
            raise TypeError(f"{node.kind}.build returned {type(made).__name__}")
    results = [env[aliases.get(name, name)] for name in outputs]
    graph.output(results[0] if len(results) == 1 else tuple(results))
    model = model_class(root, graph, class_name=class_name)
    for dotted in non_persistent:  # GraphModule re-registers buffers as persistent
        owner, leaf = _container(model, dotted)
        owner.register_buffer(leaf, owner._buffers[leaf], persistent=False)
    return model


def _named(fx_node: fx.Node, node_id: str) -> fx.Node:
    """Name a call_function after its spec node, so ``model.code`` reads like the spec."""
    fx_node.name = fx_node.graph._graph_namespace.create_name(node_id.replace(".", "_"), None)
    fx_node.meta[META_ID] = node_id  # which spec node it computes (the model API)
    return fx_node


def build_on(device: str | torch.device | None, dtype: torch.dtype | None, make) -> Any:
    """Run ``make()`` with parameters created directly on ``device`` (meta: no memory)."""
    if device is None:
        model = make()
    else:
        with torch.device(device):
            model = make()
    if dtype is not None:
        model = model.to(dtype=dtype)
    return model
