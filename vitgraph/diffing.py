"""``vitgraph diff A B``: what changes from one model to another.

Nodes are matched by id. A node is *added* or *removed* when it computes something in
one model only (disabled parts, ``nn.Identity``, count as absent), *changed* when its
kind, a param or a weight's shape differs. Regularisation (dropout and stochastic-depth
rates) does not change the function at inference, so it is listed on its own. Params
and MACs are given per node and in total, and the weights that carry over (same key,
same shape) are listed, so ``B`` can start from ``A``'s checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from vitgraph.graph import Graph
from vitgraph.ir import Node
from vitgraph.pipeline import load


@dataclass(frozen=True)
class NodeDiff:
    """One node's change (``before``/``after`` are None for an added/removed node)."""

    id: str
    kind_before: str | None
    kind_after: str | None
    params: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # changed params
    weights: dict[str, tuple[list[int] | None, list[int] | None]] = field(default_factory=dict)
    count_before: int = 0
    count_after: int = 0
    macs_before: int = 0
    macs_after: int = 0


@dataclass(frozen=True)
class Diff:
    a: str
    b: str
    added: list[NodeDiff]
    removed: list[NodeDiff]
    changed: list[NodeDiff]
    training: list[NodeDiff]  # regularisation-only differences
    params: tuple[int, int]
    macs: tuple[int, int]
    carried: list[str]  # weight keys with the same shape in both
    reshaped: list[str]  # in both, different shapes
    new: list[str]  # only in B
    dropped: list[str]  # only in A
    outputs: tuple[list[str], list[str]]
    #: nodes that compute nothing (an identity, or switched off by ``when:``) found in
    #: one spec only: (only in A, only in B); the spec changed, the function did not
    passive: tuple[list[str], list[str]] = ([], [])

    def __str__(self) -> str:
        """The diff as ``vitgraph diff`` prints it."""
        return format_diff(self)

    @property
    def param_delta(self) -> int:
        return self.params[1] - self.params[0]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["param_delta"] = self.param_delta
        data["macs_delta"] = self.macs[1] - self.macs[0]
        return data


def _label(graph: Graph) -> str:
    return f"{graph.variant} ({graph.name})" if graph.variant else graph.name


def _weights(graph: Graph) -> dict[str, list[int]]:
    model = graph.build(device="meta")
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _owner(key: str, ids: list[str]) -> str | None:
    """The node whose weights ``key`` is: the longest id that prefixes it."""
    best = None
    for node_id in ids:
        if (key == node_id or key.startswith(node_id + ".")) and (
            best is None or len(node_id) > len(best)
        ):
            best = node_id
    return best


def _disabled(node: Node, graph: Graph) -> bool:
    with torch.device("meta"):
        made = node.params.build(*(graph.type_of(i) for i in node.inputs))
    return isinstance(made, torch.nn.Identity)


def _params(node: Node) -> dict[str, Any]:
    return node.params.model_dump(exclude={"kind"})


def diff(a: Graph | str, b: Graph | str) -> Diff:
    """Compare two graphs (or specs / variant names) node by node (see the module
    docstring)."""
    a = load(a) if isinstance(a, str) else a
    b = load(b) if isinstance(b, str) else b
    rows_a = {r.id: r for r in a.summary().rows}
    rows_b = {r.id: r for r in b.summary().rows}
    nodes_a = {n.id: n for n in a.nodes}
    nodes_b = {n.id: n for n in b.nodes}
    weights_a, weights_b = _weights(a), _weights(b)
    owned_a = _by_owner(weights_a, list(nodes_a))
    owned_b = _by_owner(weights_b, list(nodes_b))

    def active(node: Node, graph: Graph) -> bool:
        return not type(node.params).training_only and not _disabled(node, graph)

    def change(node_id: str) -> NodeDiff:
        na, nb = nodes_a.get(node_id), nodes_b.get(node_id)
        params: dict[str, tuple[Any, Any]] = {}
        if na is not None and nb is not None and na.kind == nb.kind:
            pa, pb = _params(na), _params(nb)
            params = {
                k: (pa.get(k), pb.get(k)) for k in sorted({*pa, *pb}) if pa.get(k) != pb.get(k)
            }
        keys = sorted({*owned_a.get(node_id, []), *owned_b.get(node_id, [])})
        weights = {
            k: (weights_a.get(k), weights_b.get(k))
            for k in keys
            if weights_a.get(k) != weights_b.get(k)
        }
        ra, rb = rows_a.get(node_id), rows_b.get(node_id)
        return NodeDiff(
            node_id,
            na.kind if na else None,
            nb.kind if nb else None,
            params,
            weights,
            ra.params if ra else 0,
            rb.params if rb else 0,
            ra.macs if ra else 0,
            rb.macs if rb else 0,
        )

    live_a = [i for i, n in nodes_a.items() if active(n, a)]
    live_b = [i for i, n in nodes_b.items() if active(n, b)]
    added = [change(i) for i in live_b if i not in live_a]
    removed = [change(i) for i in live_a if i not in live_b]
    changed: list[NodeDiff] = []
    training: list[NodeDiff] = []
    for node_id in [i for i in live_b if i in live_a]:
        d = change(node_id)
        if d.kind_before != d.kind_after or d.weights:
            changed.append(d)
        elif d.params:
            regularisation = type(nodes_b[node_id].params).training_fields()
            (training if set(d.params) <= regularisation else changed).append(d)
    train_a = {i for i, n in nodes_a.items() if type(n.params).training_only}
    train_b = {i for i, n in nodes_b.items() if type(n.params).training_only}
    for node_id in [*nodes_a, *(i for i in nodes_b if i not in nodes_a)]:
        if node_id in train_a | train_b:
            d = change(node_id)
            if d.params or d.kind_before != d.kind_after:
                training.append(d)
    carried = sorted(k for k in weights_b if weights_a.get(k) == weights_b[k])
    reshaped = sorted(k for k in weights_b if k in weights_a and weights_a[k] != weights_b[k])
    new = sorted(k for k in weights_b if k not in weights_a)
    dropped = sorted(k for k in weights_a if k not in weights_b)
    sa, sb = a.summary(), b.summary()
    spec_a = [*nodes_a, *(i for i in a.off if i not in nodes_a)]
    spec_b = [*nodes_b, *(i for i in b.off if i not in nodes_b)]
    computing = {*live_a, *live_b, *train_a, *train_b}
    passive = (
        [i for i in spec_a if i not in spec_b and i not in computing],
        [i for i in spec_b if i not in spec_a and i not in computing],
    )
    return Diff(
        _label(a),
        _label(b),
        added,
        removed,
        changed,
        training,
        (sa.params, sb.params),
        (sa.macs, sb.macs),
        carried,
        reshaped,
        new,
        dropped,
        (a.outputs, b.outputs),
        passive,
    )


def _by_owner(weights: dict[str, list[int]], ids: list[str]) -> dict[str, list[str]]:
    owned: dict[str, list[str]] = {}
    for key in weights:
        owner = _owner(key, ids)
        if owner is not None:
            owned.setdefault(owner, []).append(key)
    return owned


# ------------------------------------------------------------------------------ text


def _shape(shape: list[int] | None) -> str:
    return "-" if shape is None else "x".join(str(s) for s in shape)


def _count(before: int, after: int, n: int = 1) -> str:
    """A row's params; a row of ``n`` repeats gives each one's and the total change."""
    each = " each" if n > 1 else ""
    if before == after:
        return f"{after:,} params{each}"
    total = f", {n * (after - before):+,} in all" if n > 1 else ""
    return f"{before:,} -> {after:,} params{each} ({after - before:+,}{each}{total})"


def _generic(name: str) -> str:
    """``blocks.3.attn.qkv.weight`` -> ``blocks.*.attn.qkv.weight``."""
    return re.sub(r"\.\d+(?=\.|$)", ".*", name)


def _collapsed(rows: list[NodeDiff]) -> list[tuple[NodeDiff, str, int]]:
    """Repeats with the same change collapse into one ``blocks.*.attn`` row."""
    groups: dict[tuple[Any, ...], list[NodeDiff]] = {}
    for d in rows:
        groups.setdefault(_signature(d), []).append(d)
    return [
        (ds[0], _generic(ds[0].id) if len(ds) > 1 else ds[0].id, len(ds)) for ds in groups.values()
    ]


def _signature(d: NodeDiff) -> tuple[Any, ...]:
    return (
        _generic(d.id),
        d.kind_before,
        d.kind_after,
        repr(d.params),
        repr({_generic(k): v for k, v in d.weights.items()}),
        d.count_before,
        d.count_after,
    )


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def format_diff(result: Diff) -> str:
    """The diff as plain text, one line per node (identical repeats collapsed)."""
    lines = [f"{result.a} -> {result.b}"]
    for title, mark, rows in (
        ("added", "+", result.added),
        ("removed", "-", result.removed),
        ("changed", "~", result.changed),
    ):
        if not rows:
            continue
        lines.append(f"{title}:")
        for d, label, n in _collapsed(rows):
            kind = d.kind_after or d.kind_before
            if d.kind_before and d.kind_after and d.kind_before != d.kind_after:
                kind = f"{d.kind_before} -> {d.kind_after}"
            what = [f"{k} {_v(x)} -> {_v(y)}" for k, (x, y) in d.params.items()]
            what += [
                f"{_generic(k) if n > 1 else k} {_shape(x)} -> {_shape(y)}"
                for k, (x, y) in d.weights.items()
                if title == "changed"
            ]
            detail = f"  ({'; '.join(what)})" if what else ""
            times = f" ×{n}" if n > 1 else ""
            count = _count(d.count_before, d.count_after, n)
            lines.append(f"  {mark} {label}{times}  {kind}  {count}{detail}")
    if result.training:

        def one(d: NodeDiff) -> str:
            if d.kind_before is None or d.kind_after is None:
                return f"{d.id} ({'added' if d.kind_before is None else 'removed'})"
            return f"{d.id} " + ", ".join(
                f"{k} {_v(x)} -> {_v(y)}" for k, (x, y) in d.params.items()
            )

        shown = ", ".join(one(d) for d in result.training[:3])
        more = f", ... ({len(result.training)} nodes)" if len(result.training) > 3 else ""
        lines.append(f"training-only (dropout / stochastic depth): {shown}{more}")
    for title, ids in (("removed", result.passive[0]), ("added", result.passive[1])):
        if ids:
            lines.append(f"{title}, computing nothing (identity or when: false): {_names(ids)}")
    if result.outputs[0] != result.outputs[1]:
        lines.append(f"outputs: {', '.join(result.outputs[0])} -> {', '.join(result.outputs[1])}")
    (pa, pb), (ma, mb) = result.params, result.macs
    lines.append(f"params: {pa:,} -> {pb:,} ({pb - pa:+,})")
    lines.append(f"MACs: {ma:,} -> {mb:,} ({mb - ma:+,})")
    total = len(result.carried) + len(result.reshaped) + len(result.new)
    lines.append(
        f"weights: {len(result.carried)} of {total} tensors carry over"
        + (f"; reshaped: {_names(result.reshaped)}" if result.reshaped else "")
        + (f"; new: {_names(result.new)}" if result.new else "")
        + (f"; dropped: {_names(result.dropped)}" if result.dropped else "")
    )
    return "\n".join(lines)


def _v(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
