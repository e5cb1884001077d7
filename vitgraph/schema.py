"""``vitgraph schema``: the JSON Schema of spec files, generated from the pydantic models.

Every block kind contributes its params (with the first line of the docstring under each
field as its description: pydantic's ``use_attribute_docstrings``), so an editor with the
YAML language server completes and checks a spec as it is typed. Any param may also be
an expression (``$dim``, ``${dim * 4}``). The schema is committed at
``vitgraph/spec.schema.json`` (the specs' modeline points at it); a test regenerates it
and fails when the committed copy drifts from the code.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from vitgraph.spec.document import SpecDocument

SCHEMA_PATH = Path(__file__).with_name("spec.schema.json")
SCHEMA_ID = "https://vitgraph.dev/spec.schema.json"
_EXPRESSION = {"$ref": "#/$defs/expression"}


def field_docs(cls: type[BaseModel]) -> dict[str, str]:
    """The first line of each field's docstring (pydantic's ``use_attribute_docstrings``
    makes it the field's description)."""
    return {
        name: info.description.strip().splitlines()[0]
        for name, info in cls.model_fields.items()
        if info.description
    }


def _model_schema(
    model: type[BaseModel], defs: dict[str, Any], expressions: bool
) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        defs.setdefault(name, definition)
    docs = field_docs(model)
    properties = schema.get("properties", {})
    for name, prop in properties.items():
        prop.pop("title", None)
        if name in docs:
            prop["description"] = docs[name]
        if expressions and name != "kind":
            properties[name] = {
                "anyOf": [_strip(prop), _EXPRESSION],
                **({"description": prop["description"]} if "description" in prop else {}),
                **({"default": prop["default"]} if "default" in prop else {}),
            }
    schema.pop("title", None)
    return schema


def _strip(prop: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in prop.items() if k not in ("description", "default")}


def _block_schemas(defs: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    from vitgraph.spec.catalog import registry

    reg = registry()
    kinds, rules = reg.kinds(), []
    for kind in kinds:
        if kind in reg.primitives:
            cls = reg.primitives[kind]
            schema = _model_schema(cls, defs, expressions=True)
            doc = inspect.cleandoc(cls.__doc__ or "").replace("\n", " ")
        else:
            composite = reg.composites[kind]
            schema = _model_schema(composite.params, defs, expressions=True)
            doc = " ".join(composite.doc.split())
        properties = {k: v for k, v in schema.get("properties", {}).items() if k != "kind"}
        then: dict[str, Any] = {
            "description": doc,
            "properties": {**properties, **_node_properties()},
            "additionalProperties": False,
        }
        required = [r for r in schema.get("required", []) if r != "kind"]
        if required:
            then["required"] = required
        rules.append(
            {"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]}, "then": then}
        )
    return kinds, rules


def _node_properties() -> dict[str, Any]:
    return {
        "id": {"type": "string", "description": "Node id (state_dict keys start with it)."},
        "kind": {"type": "string", "description": "Block kind, or an expression naming one."},
        "inputs": {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            "description": "Input node ids (default: the previous entry).",
        },
        "repeat": {
            "anyOf": [{"type": "integer", "minimum": 1}, _EXPRESSION],
            "description": "Repeat the entry N times (ids <id>.0 .. <id>.N-1; "
            "variables i and count).",
        },
        "at": {
            "type": "object",
            "description": "Per-index settings: {index: {param: value}}.",
            "additionalProperties": {"type": "object"},
        },
        "doc": {"type": "string", "description": "A note on the node."},
        "when": {
            "anyOf": [{"type": "boolean"}, _EXPRESSION],
            "description": "Whether the node is there: when false it passes its first input "
            "through (when: $distilled).",
        },
        "stochastic_depth": {
            "anyOf": [
                {"const": False},
                {
                    "type": "object",
                    "properties": {
                        "layer": {"anyOf": [{"type": "integer", "minimum": 0}, _EXPRESSION]}
                    },
                    "required": ["layer"],
                    "additionalProperties": False,
                },
                _EXPRESSION,
            ],
            "description": "The node's place in the spec's stochastic-depth schedule: false "
            "keeps its own rates; {layer: k} makes it row k of its composite instance.",
        },
    }


def _edit_schema() -> dict[str, Any]:
    from vitgraph.spec.extends import VERBS

    target = {
        "anyOf": [
            {"type": "string"},
            {
                "type": "object",
                "properties": {"kind": {"type": "string"}},
                "required": ["kind"],
                "additionalProperties": False,
            },
        ],
        "description": "A node id pattern (blocks.*.attn) or {kind: <kind>}.",
    }
    node = {"$ref": "#/$defs/node"}
    extra = {
        "node": node,
        "nodes": {"type": "array", "items": node, "description": "Several new entries."},
        "with": {"type": "string", "description": "The new kind."},
        "params": {"type": "object"},
        "set": {"type": "object"},
        "to": {"type": "string", "description": "The new id."},
    }
    options = []
    for verb, (takes, needs) in VERBS.items():
        options.append(
            {
                "type": "object",
                "required": [verb, *needs],
                "properties": {verb: target, **{k: extra[k] for k in takes}},
                "additionalProperties": False,
            }
        )
    return {"oneOf": options}


def spec_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file (deterministic: same code, same text)."""
    defs: dict[str, Any] = {}
    document = _model_schema(SpecDocument, defs, expressions=False)
    kinds, rules = _block_schemas(defs)
    properties = document["properties"]
    for key in ("input", "args"):
        properties[key]["additionalProperties"] = True
    properties["graph"] = {
        "type": "array",
        "items": {"$ref": "#/$defs/node"},
        "description": properties["graph"].get("description", ""),
    }
    properties["extends"] = {
        "type": "string",
        "description": "A shipped spec name or a spec "
        "file (in this spec's directory) whose graph this one edits.",
    }
    properties["edits"] = {
        "type": "array",
        "items": _edit_schema(),
        "description": "Edits of the extended spec's graph, in order.",
    }
    defs["expression"] = {
        "type": "string",
        "pattern": r"\$",
        "description": "An arg ($name) or an expression (${dim * 4}).",
    }
    defs["node"] = {
        "type": "object",
        "required": ["id", "kind"],
        "properties": {
            **_node_properties(),
            "kind": {"anyOf": [{"enum": kinds}, _EXPRESSION], "description": "Block kind."},
        },
        "allOf": rules,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "vitgraph spec",
        "description": "A vision transformer as a YAML graph of typed blocks.",
        "type": "object",
        "properties": properties,
        "required": ["vitgraph", "name"],
        "anyOf": [{"required": ["input", "graph"]}, {"required": ["extends"]}],
        "additionalProperties": False,
        "$defs": dict(sorted(defs.items())),
    }


def schema_text() -> str:
    return json.dumps(spec_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> None:
    path.write_text(schema_text(), encoding="utf-8")
