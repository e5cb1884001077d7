"""Phase 5, inference: every block's shape rule maps its input types to its output type
and fills in omitted dims; mismatches are reported at the node with the numbers. A node
whose input already failed is skipped, so one mistake gives one message.

``validate`` runs phases 3-5 on a source: the one path by which ``load``, every edit and
``extends:`` turn spec data into a ``Validated`` spec.
"""

from __future__ import annotations

from typing import Any

from vitgraph.checks import check_graph
from vitgraph.errors import Problem, ShapeError, SpecError
from vitgraph.ir import INPUT, Expanded, Inferred, Node, Source, Validated
from vitgraph.shapes import TensorType
from vitgraph.spec.expand import expand


def infer(expanded: Expanded) -> Inferred:
    """Run every block's shape rule; fill omitted dims; report all mismatches."""
    order, graph, problems = check_graph(expanded)
    types: dict[str, TensorType] = {INPUT: expanded.input}
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


def validate(
    source: Source, variant: str | None = None, overrides: dict[str, Any] | None = None
) -> Validated:
    """Phases 3-5: expand ``source`` (its ``variant``, the spec's default when None, and
    ``overrides``), check the graph and infer every type. Raises ``SpecError`` listing
    every problem, each at file:line:col."""
    chosen, expanded = expand(source, variant, overrides)
    return Validated(source, chosen, overrides or {}, expanded, infer(expanded))
