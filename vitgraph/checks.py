"""Phase 4, graph checks (networkx): dangling inputs, cycles (the cycle reported), unused
nodes, and a deterministic execution order.

Edges are derived from each node's ``inputs`` list, never the other way round. The order
is a topological sort that keeps the spec's own order where it can
(``lexicographical_topological_sort``).
"""

from __future__ import annotations

import networkx as nx

from vitgraph.errors import Problem, SpecError
from vitgraph.ir import INPUT, Expanded, Node
from vitgraph.suggest import did_you_mean


def check_graph(expanded: Expanded) -> tuple[list[Node], nx.DiGraph, list[Problem]]:
    """Dangling inputs, cycles and unused nodes; return the nodes in execution order."""
    problems: list[Problem] = list(expanded.problems)
    failed = _failed_ids(expanded)
    by_id = {n.id: n for n in expanded.nodes}
    position = {n.id: k for k, n in enumerate(expanded.nodes)}
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_node(INPUT)
    for name in expanded.extra_inputs:
        graph.add_node(name)
    for node in expanded.nodes:
        graph.add_node(node.id)
    for node in expanded.nodes:
        if node.params.arity is not None and len(node.inputs) != node.params.arity:
            problems.append(
                Problem(
                    node.where,
                    node.id,
                    f"kind '{node.kind}' takes {node.params.arity} input(s), "
                    f"but {len(node.inputs)} are given ({', '.join(node.inputs)})",
                )
            )
        for name in node.inputs:
            if name in failed:
                continue
            if name not in by_id and name != INPUT and name not in expanded.extra_inputs:
                problems.append(
                    Problem(
                        node.where,
                        f"{node.id}.inputs",
                        f"input '{name}' names no node"
                        f"{did_you_mean(name, [*by_id, *expanded.aliases])}",
                        _outputs_hint(name, expanded),
                    )
                )
                continue
            graph.add_edge(name, node.id)
    for name in [*expanded.outputs, *expanded.features]:
        if name not in by_id and name not in expanded.aliases and name not in failed:
            where = expanded.nodes[-1].where if expanded.nodes else None
            where, key = expanded.tap_marks.get(name, (where, "outputs"))
            if where is None:  # no entry expanded: their own problems say why
                continue
            what = "feature" if key == "features" else "output"
            problems.append(
                Problem(
                    where,
                    key,
                    f"{what} '{name}' names no node"
                    f"{did_you_mean(name, [*by_id, *expanded.aliases])}",
                    f"{key} name node ids, repeat groups ('blocks') or their members ('layers.0')",
                )
            )
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        names = [edge[0] for edge in cycle] + [cycle[0][0]]
        first = by_id.get(cycle[0][1]) or by_id[cycle[0][0]]
        problems.append(
            Problem(
                first.where,
                first.id,
                f"the graph has a cycle: {' -> '.join(names)}",
                "a node may only take inputs from nodes before it",
            )
        )
        raise SpecError(problems)
    if problems and not expanded.problems:
        raise SpecError(problems)
    if expanded.problems:  # go on to shape-check what did expand, then report everything
        return _order(expanded, graph, position, by_id), graph, problems
    needed = set()
    for name in [*expanded.outputs, *expanded.features]:
        target = expanded.aliases.get(name, name)
        needed |= nx.ancestors(graph, target) | {target}
    unused = [n for n in expanded.nodes if n.id not in needed]
    if unused:
        raise SpecError(
            [
                Problem(
                    n.where,
                    n.id,
                    "node is never used by the model's outputs",
                    "remove it, or name it in inputs/outputs/features",
                )
                for n in unused
            ]
        )
    return _order(expanded, graph, position, by_id), graph, []


def _order(expanded, graph, position, by_id) -> list[Node]:
    order = nx.lexicographical_topological_sort(graph, key=lambda n: position.get(n, -1))
    return [by_id[n] for n in order if n in by_id]


def _outputs_hint(name: str, expanded: Expanded) -> str | None:
    """For ``blocks.smal``: the named outputs of the group or composite ``blocks``."""
    prefix = name.rpartition(".")[0]
    names = sorted(
        alias.rpartition(".")[2]
        for alias in expanded.aliases
        if alias.rpartition(".")[0] == prefix and not alias.rpartition(".")[2].isdigit()
    )
    return f"the outputs of '{prefix}': {', '.join(names)}" if prefix and names else None


def _failed_ids(expanded: Expanded) -> set[str]:
    """Failed entries, their repeats and their composites' inner ids."""
    return set(expanded.failed)
