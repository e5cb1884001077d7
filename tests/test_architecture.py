"""The core's shape (DESIGN.md, "Layout"): a module imports only from layers below it (or
beside it, without a circle), and no core module names a block kind.

Imports are read with ``ast`` from every module of the package, function-level and
``TYPE_CHECKING`` imports included, so no lazy import can hide a circle or an upward
dependency.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
import typing
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"vitgraph": ROOT / "vitgraph", "vitgraph.blocks": ROOT / "blocks"}

#: the layers, bottom up (a module pattern each); a module may import from its own layer
#: (without a circle) and from the layers below
LAYERS: list[tuple[str, list[str]]] = [
    ("errors", ["vitgraph.errors", "vitgraph.suggest"]),
    (
        "tensor types, vocabulary, table math",
        ["vitgraph.shapes", "vitgraph.vocabulary", "vitgraph.resample", "vitgraph.layers"],
    ),
    ("the Block base and its hooks", ["vitgraph.block", "vitgraph.plugins"]),
    ("the registry", ["vitgraph.registry"]),
    ("the block library", ["vitgraph.blocks", "vitgraph.blocks.*"]),
    (
        "phases 1-2 data",
        [
            "vitgraph.spec",
            "vitgraph.spec.parse",
            "vitgraph.spec.expressions",
            "vitgraph.spec.document",
            "vitgraph.spec.overrides",
        ],
    ),
    ("the IR", ["vitgraph.ir"]),
    (
        "the catalog",
        ["vitgraph.spec.problems", "vitgraph.spec.composites", "vitgraph.spec.catalog"],
    ),
    (
        "phase 3 and the edit verbs",
        ["vitgraph.spec.expand", "vitgraph.spec.edits", "vitgraph.spec.serialize"],
    ),
    ("extends + edits, reading a spec", ["vitgraph.spec.extends", "vitgraph.spec.source"]),
    ("phase 4: graph checks", ["vitgraph.checks"]),
    ("phase 5: inference", ["vitgraph.inference"]),
    ("phase 6: compiler, weight init", ["vitgraph.compiler", "vitgraph.init"]),
    (
        "model services",
        [
            "vitgraph.model",
            "vitgraph.model.*",
            "vitgraph.weights",
            "vitgraph.weights.*",
            "vitgraph.summary",
        ],
    ),
    ("inference passes", ["vitgraph.passes", "vitgraph.passes.*"]),
    ("Graph", ["vitgraph.graph"]),
    ("the orchestrator", ["vitgraph.pipeline"]),
    (
        "features",
        [
            "vitgraph.bench",
            "vitgraph.bench_run",
            "vitgraph.block_catalog",
            "vitgraph.diffing",
            "vitgraph.export",
            "vitgraph.pictures",
            "vitgraph.predict",
            "vitgraph.predict.*",
            "vitgraph.render",
            "vitgraph.sampling",
            "vitgraph.schema",
            "vitgraph.interop",
            "vitgraph.interop.*",
            "vitgraph.train",
            "vitgraph.train.*",
        ],
    ),
    ("the CLI", ["vitgraph.cli", "vitgraph.tools", "vitgraph.train.cli"]),
    ("the public API", ["vitgraph"]),
]


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int | None:
    """The layer naming the module itself, else the first whose pattern matches it."""
    for number, (_, patterns) in enumerate(LAYERS):
        if module in patterns:
            return number
    for number, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return number
    return None


def _resolve(name: str) -> str | None:
    """The project module an imported dotted name is (a module, or the package above an
    imported attribute)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                out.add(target)
    return out


def test_every_module_of_the_package_has_a_layer():
    unplaced = sorted(m for m in MODULES if _layer(m) is None)
    assert unplaced == [], "add these modules to LAYERS in tests/test_architecture.py"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for module in MODULES:
        own = _layer(module)
        for target in sorted(_imports(module)):
            theirs = _layer(target)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{module} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]})")
    assert upward == []


def test_the_imports_have_no_circle():
    graph = nx.DiGraph()
    for module in MODULES:
        graph.add_node(module)
        for target in _imports(module):
            graph.add_edge(module, target)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        cycle = []
    assert cycle == [], " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])


def test_the_layer_checks_catch_an_upward_import_and_a_circle(tmp_path, monkeypatch):
    # a module of the IR layer that imports the Graph, and the Graph importing it back
    fake = {
        "vitgraph.ir": tmp_path / "ir.py",
        "vitgraph.graph": tmp_path / "graph.py",
    }
    fake["vitgraph.ir"].write_text("def f():\n    from vitgraph.graph import Graph\n")
    fake["vitgraph.graph"].write_text("from vitgraph.ir import Node\n")
    monkeypatch.setattr(sys.modules[__name__], "MODULES", fake)
    assert _imports("vitgraph.ir") == {"vitgraph.graph"}
    with pytest.raises(AssertionError, match=r"vitgraph.ir \(the IR\) imports vitgraph.graph"):
        test_no_module_imports_from_a_layer_above_its_own()
    with pytest.raises(AssertionError, match="vitgraph.ir -> vitgraph.graph -> vitgraph.ir"):
        test_the_imports_have_no_circle()


# ---------------------------------------------------------------------- no kind names


def _kind_names() -> set[str]:
    from vitgraph.block import Role
    from vitgraph.spec.catalog import registry

    reg = registry()
    return ({*reg.kinds(), *reg.aliases}) - set(typing.get_args(Role))


def _docstrings(tree: ast.AST) -> set[int]:
    """Ids of the string constants that are documentation (module, class, function and
    attribute docstrings): prose may mention a kind."""
    docs = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for statement in body:
                if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                    docs.add(id(statement.value))
    return docs


def kind_names_in(path: Path, kinds: set[str], root: Path = ROOT) -> list[str]:
    """Kind names in the code's string constants: a whole string, or a snake_case word."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            words = {w for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", node.value) if "_" in w}
            hits = sorted((words | {node.value}) & kinds)
            if hits:
                found.append(f"{path.relative_to(root)}:{node.lineno}: {', '.join(hits)}")
    return found


def test_no_core_module_names_a_block_kind():
    """Core dispatches on the hooks a kind declares; only the reference converters under
    vitgraph/interop/ (which translate a reference's classes into kinds) name kinds."""
    kinds = _kind_names()
    core = [
        p
        for m, p in MODULES.items()
        if m.startswith("vitgraph.") and not m.startswith(("vitgraph.blocks", "vitgraph.interop"))
    ]
    found = [hit for path in core for hit in kind_names_in(path, kinds)]
    assert found == []


def test_the_kind_name_check_finds_a_kind_in_a_core_module(tmp_path):
    module = tmp_path / "objectives.py"
    module.write_text('"""Mentions distill_head in prose."""\nHEADS = {"distill_head"}\n')
    assert kind_names_in(module, _kind_names(), tmp_path) == ["objectives.py:2: distill_head"]
