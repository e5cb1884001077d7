"""Phase 5, inference: every block's shape rule maps its input types to its output type
and fills in omitted dims; mismatches are reported at the node with the numbers. A node
whose input already failed is skipped, so one mistake gives one message.

``validate`` runs phases 3-5 on a source: the one path by which ``load``, every edit and
``extends:`` turn spec data into a ``Validated`` spec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vitgraph.checks import check_graph
from vitgraph.errors import Location, Problem, ShapeError, SpecError
from vitgraph.ir import INPUT, Expanded, Inferred, Node, Source, Validated
from vitgraph.shapes import TensorType
from vitgraph.spec.expand import expand, hosts, param_ref

#: ``retry(arg, value)``: the problems of the same spec with ``arg`` set to ``value``
Retry = Callable[[str, Any], list[Problem]]


def infer(expanded: Expanded, source: Source | None = None, retry: Retry | None = None) -> Inferred:
    """Run every block's shape rule; fill omitted dims; report all mismatches (a hint
    that proposes values keeps those that fit the whole graph: see ``_fits_hint``)."""
    order, graph, problems = check_graph(expanded)
    types: dict[str, TensorType] = {INPUT: expanded.input, **expanded.extra_inputs}
    resolved: list[Node] = []
    for node in order:
        if any(name not in types for name in node.inputs):
            continue  # an upstream node already failed
        try:
            params, out = node.params.infer(*(types[name] for name in node.inputs))
        except ShapeError as exc:
            hint = _chosen_hint(node, expanded, types) or _fits_hint(
                node, exc, order, types, source, retry
            )
            problems.append(Problem(node.mark(exc.field), node.id, exc.message, hint))
            continue
        node.params = params
        types[node.id] = out
        resolved.append(node)
    if problems:
        raise SpecError(sorted(problems, key=lambda p: (p.location.line, p.location.col)))
    return Inferred(resolved, types, graph)


def _fits_hint(
    node: Node,
    exc: ShapeError,
    order: list[Node],
    types: dict[str, TensorType],
    source: Source | None,
    retry: Retry | None,
) -> str | None:
    """``exc``'s hint with its ``{fits}`` narrowed to the values that fit every node
    reading the same spec value as ``node``. A value read from an arg (``$window``, in a
    repeat or in each Twins stage) is tried by validating the spec again with the arg set
    (derived values such as Swin's ``shift = window // 2`` follow); a value written in
    place is tried in every node that the same place feeds. One window shared by all
    stages must fit the smallest grid too."""
    if exc.fits is None or exc.field is None or exc.hint is None:
        return exc.hint
    field = exc.field
    arg = _origin(source).get(node.mark(field))
    if arg is not None and retry is not None:
        whole = [
            v for v in exc.fits if not any(p.message.startswith(f"{field} ") for p in retry(arg, v))
        ]
        readers = f"every node that reads ${arg}"
    else:
        mark, value = node.mark(field), getattr(node.params, field, None)
        ids = {
            n.id for n in order if n.mark(field) == mark and getattr(n.params, field, None) == value
        }
        whole = [v for v in exc.fits if _fits_all(order, types, ids, field, v)]
        readers = f"all {len(ids)} nodes that read it"
    if whole:
        return exc.hint.replace("{fits}", ", ".join(map(str, whole)))
    return (
        f"no {field} fits {readers} (here: {', '.join(map(str, exc.fits))}); change the input size"
    )


def _origin(source: Source | None) -> dict[Location, str]:
    """Spec locations whose value is a bare ``$arg`` -> that arg's name."""
    if source is None or not isinstance(source.data, dict):
        return {}
    args = set(source.data.get("args") or {})
    out: dict[Location, str] = {}
    for path, location in source.marks.values.items():
        value: Any = source.data
        for step in path:
            try:
                value = value[step]
            except (KeyError, IndexError, TypeError):
                value = None
                break
        name = param_ref(value)
        if name is not None and name in args:
            out[location] = name
    return out


def _fits_all(
    order: list[Node], types: dict[str, TensorType], readers: set[str], field: str, value: Any
) -> bool:
    """Whether inference passes every node in ``readers`` with ``field`` set to ``value``
    in all of them (a trial on copies: nothing is changed)."""
    ids = {n.id for n in order}
    known = {name: t for name, t in types.items() if name not in ids}  # the inputs
    for n in order:
        if any(name not in known for name in n.inputs):
            if n.id in readers:
                return False
            continue
        params = n.params.model_copy(update={field: value}) if n.id in readers else n.params
        try:
            _, known[n.id] = params.infer(*(known[name] for name in n.inputs))
        except ShapeError as exc:
            if n.id in readers and exc.field == field:
                return False
            if n.id in readers:
                # a param derived from this one in the spec (Swin's shift = window // 2)
                # keeps its old value in the trial: not this value's fault
                known[n.id] = known[n.inputs[0]] if n.inputs else known[INPUT]
    return True


def _chosen_hint(node: Node, expanded: Expanded, types: dict[str, TensorType]) -> str | None:
    """When a node fails on what a kind chosen by its composite's param made of the tokens
    (``attention: class_attention`` in an ``encoder_layer``: one token where the residual
    wants all), say which choice it was and where that kind belongs."""
    for chosen, param in expanded.chosen.items():
        same_instance = chosen.rpartition(".")[0] == node.id.rpartition(".")[0]
        if chosen == node.id or not same_instance or chosen not in types:
            continue
        made = next((n for n in expanded.nodes if n.id == chosen), None)
        if made is None or types[chosen] == types.get(made.inputs[0]):
            continue  # the choice kept its input's type: not the cause
        others = hosts(made.kind, but=node.composite_kind)
        where = f"; {made.kind} is held by {', '.join(others)}" if others else ""
        return (
            f"{chosen} is {made.kind} ({param}), which turns {types[made.inputs[0]]} into "
            f"{types[chosen]}{where}"
        )
    return None


def validate(
    source: Source, variant: str | None = None, overrides: dict[str, Any] | None = None
) -> Validated:
    """Phases 3-5: expand ``source`` (its ``variant``, the spec's default when None, and
    ``overrides``), check the graph and infer every type. Raises ``SpecError`` listing
    every problem, each at file:line:col."""
    return _validate(source, variant, overrides or {}, narrow=True)


def _validate(
    source: Source, variant: str | None, overrides: dict[str, Any], narrow: bool
) -> Validated:
    def retry(arg: str, value: Any) -> list[Problem]:
        try:
            _validate(source, variant, {**overrides, arg: value}, narrow=False)
        except SpecError as exc:
            return list(exc.problems)
        return []

    chosen, expanded = expand(source, variant, overrides)
    inferred = infer(expanded, source, retry if narrow else None)
    return Validated(source, chosen, overrides, expanded, inferred)
