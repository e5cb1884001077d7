"""fx rewrites inside one block's module: tracing it, running projections that read one
tensor as one matmul, and computing once what depends only on its weights.

A block's module is an ordinary ``nn.Module``; the passes that change its forward trace it
first (``torch.fx.symbolic_trace``, in eval mode, so training-only branches vanish; the
export sweep traces every block module, so each can be) and rewrite the traced graph.
Submodules keep their paths, so the kind's hooks still find them afterwards.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx, nn

from vitgraph.passes.folding import fuse_linears

#: op names that must never be computed once: random draws (in-place writes, ending in
#: ``_``, are excluded apart; dropout in an eval trace is the identity it computes)
_NOT_CONSTANT = ("rand", "bernoulli", "normal", "uniform", "manual_seed")


def traced(module: nn.Module) -> fx.GraphModule:
    """``module`` as an fx GraphModule traced in eval mode (a GraphModule as it is)."""
    if isinstance(module, fx.GraphModule):
        return module
    module.eval()
    return fx.symbolic_trace(module)


def fuse_group(gm: fx.GraphModule, names: tuple[str, ...]) -> bool:
    """Replace the calls of the Linears ``names`` by one call of their concatenation and a
    split, when each is called once and all read the same tensor (else leave them)."""
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and n.target in names]
    if sorted(str(n.target) for n in calls) != sorted(names):
        return False
    if any(n.args != calls[0].args or n.kwargs or len(n.args) != 1 for n in calls):
        return False
    linears = [m for n in calls if isinstance(m := gm.get_submodule(str(n.target)), nn.Linear)]
    if len(linears) != len(calls):
        return False
    name = "_".join(str(n.target).replace(".", "_") for n in calls)
    gm.add_submodule(name, fuse_linears(linears))
    graph = gm.graph
    with graph.inserting_before(calls[0]):
        out = graph.call_module(name, calls[0].args)
        parts = graph.call_function(
            torch.split, (out, [m.out_features for m in linears]), {"dim": -1}
        )
        for i, call in enumerate(calls):
            call.replace_all_uses_with(graph.call_function(operator.getitem, (parts, i)))
    for call in calls:
        graph.erase_node(call)
        gm.delete_submodule(str(call.target))
    gm.recompile()
    return True


def _foldable(node: fx.Node, constant: set[fx.Node]) -> bool:
    if node.op == "get_attr":
        return True
    if node.op not in ("call_function", "call_method"):
        return False
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    if name.endswith("_") or any(word in name for word in _NOT_CONSTANT):
        return False
    inputs = node.all_input_nodes
    return bool(inputs) and all(i in constant for i in inputs)


def _evaluate(gm: fx.GraphModule, node: fx.Node, env: dict[fx.Node, Any]) -> Any:
    if node.op == "get_attr":
        value: Any = gm
        for part in str(node.target).split("."):
            value = getattr(value, part)
        return value
    args = fx.node.map_arg(node.args, env.__getitem__)
    kwargs = fx.node.map_arg(node.kwargs, env.__getitem__)
    if node.op == "call_method":
        return getattr(args[0], str(node.target))(*args[1:], **kwargs)
    assert callable(node.target)
    return node.target(*args, **kwargs)


@torch.no_grad()
def fold_constants(gm: fx.GraphModule) -> int:
    """Compute once every value of the graph that depends only on parameters and buffers
    (not on the input), store it as a non-persistent buffer and read that instead;
    returns how many values were stored. A view of a parameter or buffer stays as it is:
    computing it saves nothing."""
    constant: set[fx.Node] = set()
    env: dict[fx.Node, Any] = {}
    for node in gm.graph.nodes:
        if _foldable(node, constant):
            constant.add(node)
            env[node] = _evaluate(gm, node, env)
    stored = 0
    for node in list(gm.graph.nodes):
        if node not in constant or node.op == "get_attr":
            continue
        if all(user in constant for user in node.users):
            continue
        value = env[node]
        if not isinstance(value, torch.Tensor) or _is_attribute_view(value, gm):
            continue
        name = f"_precomputed{stored}"
        gm.register_buffer(name, value.detach().contiguous().clone(), persistent=False)
        with gm.graph.inserting_before(node):
            node.replace_all_uses_with(gm.graph.get_attr(name))
        stored += 1
    if stored:
        gm.graph.eliminate_dead_code()
        gm.delete_all_unused_submodules()
        gm.recompile()
    return stored


def _is_attribute_view(value: torch.Tensor, gm: fx.GraphModule) -> bool:
    storage = value.untyped_storage().data_ptr()
    attributes = (*gm.parameters(), *gm.buffers())
    return any(t.untyped_storage().data_ptr() == storage for t in attributes)
