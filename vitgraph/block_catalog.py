"""The block catalog: every shipped kind with its role, doc and params, as data.

Generated from the registry (``vitgraph schema --write`` writes it beside
``spec.schema.json``) and shipped with the package, so ``vitgraph list blocks`` and
``vitgraph show KIND`` answer without importing torch or any block module; a test
regenerates it and fails when the committed copy drifts from the code. With a plugin
(``--plugin``, or an installed ``vitgraph.blocks`` entry point) the live registry is read
instead, so the plugin's kinds are listed too.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import entry_points
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from vitgraph.plugins import GROUP

CATALOG_PATH = Path(__file__).with_name("block_catalog.json")


#: annotated_types constraints -> how a reader writes them
_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _type_name(annotation: Any) -> str:
    """A param's type as a reader writes it: ``int > 0 | null``, ``one of gelu, relu``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        base, *meta = args
        bounds = []
        for item in meta:
            for constraint in [item, *getattr(item, "metadata", [])]:
                for attr, sign in _BOUNDS.items():
                    value = getattr(constraint, attr, None)
                    if value is not None and type(constraint).__name__.lower() == attr:
                        bounds.append(f"{sign} {value}")
        return " ".join([_type_name(base), ", ".join(bounds)]).strip()
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (Union, UnionType):
        return " | ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _params(model: Any) -> list[dict[str, Any]]:
    out = []
    for name, info in model.model_fields.items():
        if name == "kind":
            continue
        default = None if info.is_required() else info.get_default()
        out.append(
            {
                "name": name,
                # pydantic keeps a top-level Annotated's constraints apart (metadata)
                "type": _type_name(
                    Annotated[(info.annotation, *info.metadata)]
                    if info.metadata
                    else info.annotation
                ),
                "required": info.is_required(),
                "default": default
                if isinstance(default, str | int | float | bool)
                else (list(default) if isinstance(default, tuple | list) else None),
                "doc": (info.description or "").strip(),
            }
        )
    return out


def live_rows() -> list[dict[str, Any]]:
    """The catalog of the registry as loaded now (shipped kinds and any plugin's)."""
    from vitgraph.spec.catalog import registry

    reg = registry()
    rows: list[dict[str, Any]] = []
    for kind in reg.kinds():
        if kind in reg.primitives:
            cls = reg.primitives[kind]
            rows.append(
                {
                    "kind": kind,
                    "role": cls.role,
                    "composite": False,
                    "doc": " ".join((cls.__doc__ or "").split()),
                    "params": _params(cls),
                    "origin": reg.origin(kind),
                }
            )
        else:
            comp = reg.composites[kind]
            rows.append(
                {
                    "kind": kind,
                    "role": "composite",
                    "composite": True,
                    "doc": " ".join(comp.doc.split()),
                    "params": _params(comp.params),
                    "origin": f"vitgraph/blocks/{Path(comp.file).name}",
                }
            )
    return rows


def catalog_text() -> str:
    return json.dumps(live_rows(), indent=2, ensure_ascii=False) + "\n"


def write_catalog(path: Path = CATALOG_PATH) -> None:
    path.write_text(catalog_text(), encoding="utf-8")


def rows(plugins: bool = False) -> list[dict[str, Any]]:
    """The catalog: the committed file, or the live registry when a plugin is in play
    (``plugins``: one was named on the command line)."""
    if plugins or list(entry_points(group=GROUP)) or not CATALOG_PATH.is_file():
        return live_rows()
    loaded: list[dict[str, Any]] = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    return loaded


#: a sentence ends at a full stop before a capital letter, not after an abbreviation
_SENTENCE_END = re.compile(
    r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bcf)(?<!\bFig)(?<!\bEq)(?<!\bvs)(?<!\bSec)"
    r"(?<!\bapprox)\.\s+(?=[A-Z(`])"
)


def first_sentence(doc: str) -> str:
    """A doc's first sentence, whole (``Vaswani et al. 2017`` does not end it)."""
    match = _SENTENCE_END.search(doc)
    return doc[: match.start() + 1] if match else doc


# -- the block reference page of the documentation site (docs/blocks.md) -------------------

#: the documentation's block reference, beside the package in a repository checkout
REFERENCE_PATH = Path(__file__).resolve().parent.parent / "docs" / "blocks.md"

#: a sentence that cites a paper: an arXiv id, a section, an equation, a figure, a venue
_CITES = re.compile(r"arXiv:|§|\bEq\. ?\d|\bFig\. ?\d|et al\.|\b(?:19|20)\d\d\b")


def paper_section(row: dict[str, Any]) -> str:
    """Where the paper defines a kind: the sentences of its doc that cite one, else the
    first such sentence of its family module's doc (``blocks/<family>.py``, so marked),
    else ``""`` (plumbing)."""
    found = _citing(row["doc"])
    if found or row["composite"]:
        return " ".join(found)
    import importlib

    module = row["origin"].rpartition(".")[0]
    try:
        doc = importlib.import_module(module).__doc__ or ""
    except ImportError:
        return ""
    family = _citing(" ".join(doc.split()))
    return f"(its family, `{module}`) {family[0]}" if family else ""


def _citing(doc: str) -> list[str]:
    sentences, rest = [], doc
    while rest:
        first = first_sentence(rest)
        if _CITES.search(first):
            sentences.append(first)
        rest = rest[len(first) :].strip()
    return sentences


def _cell(value: Any) -> str:
    text = "" if value is None else json.dumps(value) if not isinstance(value, str) else value
    return text.replace("|", "\\|").replace("\n", " ")


def reference_markdown(catalog: list[dict[str, Any]] | None = None) -> str:
    """The block reference page: every kind of the live registry (or ``catalog``) with its
    role, doc, paper section and params (type, default, doc), primitives then composites."""
    catalog = catalog if catalog is not None else live_rows()
    lines = [
        "# Block reference",
        "",
        "<!-- generated from the registry by `vitgraph schema --write`: do not edit; "
        "tests/test_block_catalog.py fails when it drifts -->",
        "",
        f"Every block kind a spec can name: {sum(not r['composite'] for r in catalog)} "
        f"primitives (Python classes in `blocks/*.py`) and "
        f"{sum(r['composite'] for r in catalog)} composites (YAML graphs in `blocks/*.yaml`, "
        "see [Composites](composites.md)). `vitgraph show KIND` prints the same entry.",
        "",
    ]
    for composite, title in ((False, "Primitives"), (True, "Composites")):
        lines += [f"## {title}", ""]
        for row in catalog:
            if row["composite"] != composite:
                continue
            lines += [f"### {row['kind']}", ""]
            lines += [f"*{row['role']}* · `{row['origin']}`", "", row["doc"] or "(no doc)", ""]
            paper = paper_section(row)
            lines += [f"**Paper:** {paper}" if paper else "**Paper:** none (plumbing).", ""]
            if not row["params"]:
                lines += ["No params.", ""]
                continue
            lines += ["| param | type | default | doc |", "|---|---|---|---|"]
            for p in row["params"]:
                default = "required" if p["required"] else _cell(p["default"]) or "null"
                lines.append(
                    f"| `{p['name']}` | {_cell(p['type'])} | {default} | {_cell(p['doc'])} |"
                )
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_reference(path: Path = REFERENCE_PATH) -> bool:
    """Write the block reference page when the documentation folder is there (a
    repository checkout, not an installed wheel); whether it was written."""
    if not path.parent.is_dir():
        return False
    path.write_text(reference_markdown(), encoding="utf-8")
    return True
