"""Phases 4-5: check the graph (networkx) and infer every node's output type.

Edges are derived from each node's ``inputs`` list, never the other way round. Order is
deterministic: a topological sort that keeps the spec's own order where it can. Shape
errors are reported at the node with the numbers; a node whose input already failed is
skipped, so one mistake gives one message.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from vitgraph.errors import Problem, ShapeError, SpecError
from vitgraph.loader import Expanded, Node
from vitgraph.shapes import Image, TensorType
from vitgraph.suggest import did_you_mean

INPUT = "input"


@dataclass
class Inferred:
    order: list[Node]
    types: dict[str, TensorType]  # node id (and "input") -> its output type
    graph: nx.DiGraph


def check_graph(expanded: Expanded) -> tuple[list[Node], nx.DiGraph, list[Problem]]:
    """Dangling inputs, cycles and unused nodes; return the nodes in execution order."""
    problems: list[Problem] = list(expanded.problems)
    failed = _failed_ids(expanded)
    by_id = {n.id: n for n in expanded.nodes}
    position = {n.id: k for k, n in enumerate(expanded.nodes)}
    graph = nx.DiGraph()
    graph.add_node(INPUT)
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
            if name not in by_id and name != INPUT:
                problems.append(
                    Problem(
                        node.where,
                        f"{node.id}.inputs",
                        f"input '{name}' names no node"
                        f"{did_you_mean(name, [*by_id, *expanded.aliases])}",
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


def _failed_ids(expanded: Expanded) -> set[str]:
    """Failed entries, their repeats and their composites' inner ids."""
    return set(expanded.failed)


def infer(expanded: Expanded) -> Inferred:
    """Run every block's shape rule; fill omitted dims; report all mismatches."""
    order, graph, problems = check_graph(expanded)
    height, width = expanded.input_size
    types: dict[str, TensorType] = {INPUT: Image(expanded.input_channels, height, width)}
    resolved: list[Node] = []
    for node in order:
        if any(name not in types for name in node.inputs):
            continue  # an upstream node already failed
        try:
            params, out = node.params.infer(*(types[name] for name in node.inputs))
        except ShapeError as exc:
            problems.append(Problem(node.mark(exc.field), node.id, exc.message, exc.hint))
            continue
        node.params = params
        types[node.id] = out
        resolved.append(node)
    if problems:
        raise SpecError(sorted(problems, key=lambda p: (p.location.line, p.location.col)))
    return Inferred(resolved, types, graph)
