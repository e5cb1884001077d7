"""``vitgraph graph``: pictures of a graph as Mermaid, Graphviz DOT, SVG or PNG.

By default a repeat group (``blocks`` ×12) and a composite block are one box, so ViT
fits on a screen; ``expand=True`` draws every primitive node. Edges carry the tensor
shape they hold. SVG and PNG go through Graphviz's ``dot`` when it is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from vitgraph.graph import Graph
from vitgraph.spec.edits import instance_kinds

FORMATS = ("mermaid", "dot", "svg", "png")
NO_DOT = (
    "drawing {fmt} needs Graphviz's `dot` program, which is not installed "
    "(Debian/Ubuntu: apt-get install graphviz); --format mermaid and --format dot "
    "work without it"
)


@dataclass(frozen=True)
class Box:
    id: str
    kind: str
    count: int  # repeats drawn as this one box
    params: int


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str


def layout(graph: Graph, expand: bool = False) -> tuple[list[Box], list[Edge]]:
    """Boxes (collapsed unless ``expand``) and the shape-labelled edges between them."""
    rows = {r.id: r for r in graph.summary().rows}
    kinds = instance_kinds(graph)

    entries = {n.id: n.path[0].id for n in graph.nodes if n.path}

    def unit(node_id: str) -> str:
        if expand or node_id not in entries:
            return node_id
        top = entries[node_id]
        return top if top in graph.groups else node_id

    boxes: dict[str, Box] = {"input": Box("input", "image", 1, 0)}
    edges: dict[tuple[str, str], Edge] = {}
    for node in graph.nodes:
        box = unit(node.id)
        if box not in boxes:
            count = graph.groups[box][1] if box in graph.groups else 1
            boxes[box] = Box(
                box, kinds.get(box, node.kind) if box != node.id else node.kind, count, 0
            )
        old = boxes[box]
        boxes[box] = Box(old.id, old.kind, old.count, old.params + rows[node.id].params)
        for name in node.inputs:
            source = unit(name)
            if source != box and (source, box) not in edges:
                edges[(source, box)] = Edge(source, box, _shape(graph, name))
    for name in graph.outputs:
        source = unit(name)
        boxes["output"] = Box("output", "output", 1, 0)
        edges[(source, "output")] = Edge(source, "output", _shape(graph, name))
    return list(boxes.values()), list(edges.values())


def _shape(graph: Graph, node_id: str) -> str:
    return "×".join(str(s) for s in graph.type_of(node_id).shape)


def _label(box: Box) -> tuple[str, str]:
    title = f"{box.id} ×{box.count}" if box.count > 1 else box.id
    detail = box.kind if box.kind != box.id else ""
    if box.params:
        detail += f" · {box.params:,} params"
    return title, detail.strip(" ·")


def mermaid(graph: Graph, expand: bool = False) -> str:
    boxes, edges = layout(graph, expand)
    names = {b.id: f"n{k}" for k, b in enumerate(boxes)}
    lines = ["flowchart TD"]
    for box in boxes:
        title, detail = _label(box)
        text = f"{title}<br/><small>{detail}</small>" if detail else title
        shape = ("([", "])") if box.id in ("input", "output") else ("[", "]")
        lines.append(f'  {names[box.id]}{shape[0]}"{_escape(text)}"{shape[1]}')
    for edge in edges:
        lines.append(f'  {names[edge.source]} -->|"{edge.label}"| {names[edge.target]}')
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace('"', "#quot;")


def dot(graph: Graph, expand: bool = False) -> str:
    boxes, edges = layout(graph, expand)
    title = f"{graph.name} / {graph.variant}" if graph.variant else graph.name
    lines = [
        f"digraph {_quote(title)} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fillcolor="#f5f5f5", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for box in boxes:
        head, detail = _label(box)
        label = f"{head}\\n{detail}" if detail else head
        extra = ', shape=ellipse, fillcolor="#e3f2fd"' if box.id in ("input", "output") else ""
        lines.append(f"  {_quote(box.id)} [label={_quote(label, raw=True)}{extra}];")
    for edge in edges:
        lines.append(
            f"  {_quote(edge.source)} -> {_quote(edge.target)} [label={_quote(edge.label)}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _quote(text: str, raw: bool = False) -> str:
    body = text.replace('"', '\\"') if raw else text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{body}"'


def render(graph: Graph, fmt: str, expand: bool = False) -> bytes:
    """The picture in ``fmt`` (text formats UTF-8 encoded)."""
    if fmt == "mermaid":
        return mermaid(graph, expand).encode()
    if fmt == "dot":
        return dot(graph, expand).encode()
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}' (one of {', '.join(FORMATS)})")
    program = shutil.which("dot")
    if program is None:
        raise RuntimeError(NO_DOT.format(fmt=fmt.upper()))
    done = subprocess.run(
        [program, f"-T{fmt}"],
        input=dot(graph, expand).encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
