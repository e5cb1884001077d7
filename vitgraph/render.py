"""Human-readable output: summary tables and listings (rich)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from vitgraph.summary import Summary


def _num(n: int) -> str:
    return f"{n:,}" if n else "-"


def _macs(n: int) -> str:
    if not n:
        return "-"
    return f"{n / 1e9:.3f} G" if n >= 1e8 else f"{n / 1e6:.2f} M"


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape)


def print_summary(graph, summary: Summary, title: str, footer: str | None = None) -> None:
    """One row per node, repeat groups collapsed (``blocks x12``), totals at the end."""
    table = Table(title=title, title_justify="left", show_footer=True, header_style="bold")
    table.add_column("node", footer="total")
    table.add_column("kind")
    table.add_column("output", footer=_shape(summary.output_shape))
    table.add_column("params", justify="right", footer=_num(summary.params))
    table.add_column("MACs", justify="right", footer=_macs(summary.macs))
    branches = _branch_outputs(graph) if graph is not None else {}
    for row in summary.grouped():
        label = f"{row.id} ×{row.count}" if row.count > 1 else row.id
        table.add_row(label, row.kind, _shape(row.output_shape), _num(row.params), _macs(row.macs))
        for name, shape in branches.get(row.id, []):  # the other streams it passes on
            table.add_row(f"  └ {name}", "branch", _shape(shape), "", "")
    console = Console(width=max(100, Console().width))
    console.print(table)
    console.print(
        f"input {_shape(summary.input_shape)}; {summary.params / 1e6:.2f} M params, "
        f"{summary.macs / 1e9:.3f} GMACs ({summary.flops / 1e9:.3f} GFLOPs)"
    )
    taps = graph.feature_shapes() if graph is not None and graph.features else {}
    if taps:
        console.print(
            "features: " + ", ".join(f"{name} {_shape(shape)}" for name, shape in taps.items())
        )
    if footer:
        console.print(footer)


def _branch_outputs(graph) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """Repeat groups that pass on more than one stream (CrossViT's two branches, TNT's
    words and patches): group id -> (inner name, shape) of every stream that a node
    outside its instance reads, the group's own output included."""
    out: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for group in graph.groups:
        if "." in group:
            continue
        prefix = f"{group}."
        instance = {
            n.id.split(".")[1]
            for n in graph.nodes
            if n.id.startswith(prefix) and n.id.split(".")[1].isdigit()
        }
        if not instance:
            continue
        last = f"{prefix}{max(instance, key=int)}."
        read = {
            name
            for n in graph.nodes
            for name in n.inputs
            if name.startswith(last) and not n.id.startswith(last)
        }
        read |= {name for name in graph.outputs + graph.features if name.startswith(last)}
        if len(read) > 1:
            out[group] = [(name[len(last) :], graph.type_of(name).shape) for name in sorted(read)]
    return out


def print_specs(as_json: bool) -> int:
    from vitgraph.spec.catalog import read_shipped, shipped_specs

    rows = []
    for family, path in shipped_specs().items():
        data = read_shipped(path) or {}
        rows.append(
            {
                "spec": family,
                "default": data.get("default"),
                "variants": list(data.get("variants", {})),
                "paper": data.get("paper", ""),
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(header_style="bold")
    for column in ("spec", "default", "variants", "paper"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["spec"], row["default"] or "", ", ".join(row["variants"]), row["paper"])
    Console(width=max(120, Console().width)).print(table)
    return 0


def print_blocks(as_json: bool, plugins: bool = False) -> int:
    """Every block kind: from the shipped catalog (no block module imported), or the live
    registry when a plugin is named."""
    from rich.markup import escape

    from vitgraph.block_catalog import first_sentence, rows

    listed = []
    for row in rows(plugins):
        listed.append(
            {
                "kind": row["kind"],
                "role": row["role"],
                "family": row["role"],  # the name "role" had before 0.2 (deprecated)
                "composite": row["composite"],
                "doc": first_sentence(row["doc"]),
                "params": [p["name"] for p in row["params"]],
                "origin": row["origin"],
            }
        )
    if as_json:
        print(json.dumps(listed, indent=2))
        return 0
    table = Table(header_style="bold")
    for column in ("kind", "role", "params", "doc"):
        table.add_column(column, overflow="fold")
    for row in listed:  # docs hold [h, w] and the like: not rich markup
        table.add_row(row["kind"], row["role"], ", ".join(row["params"]), escape(row["doc"]))
    Console(width=max(140, Console().width)).print(table)
    return 0
