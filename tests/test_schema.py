"""``vitgraph schema``: generated from the pydantic models, committed, and pointed at by
every shipped spec's modeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitgraph.cli import main
from vitgraph.schema import SCHEMA_PATH, field_docs, schema_text, spec_schema
from vitgraph.spec.catalog import registry, shipped_specs

ROOT = Path(__file__).resolve().parent.parent
MODELINE = "# yaml-language-server: $schema=../vitgraph/spec.schema.json"


def test_committed_schema_matches_the_code():
    committed = SCHEMA_PATH.read_text(encoding="utf-8")
    assert committed == schema_text(), (
        "vitgraph/spec.schema.json is out of date: run `vitgraph schema --write` and commit it"
    )


@pytest.mark.parametrize("family", sorted(shipped_specs()))
def test_every_shipped_spec_starts_with_the_schema_modeline(family):
    first = Path(shipped_specs()[family]).read_text(encoding="utf-8").splitlines()[0]
    assert first == MODELINE


def test_examples_point_at_the_schema_too():
    for path in sorted((ROOT / "examples" / "edits").glob("*.yaml")):
        assert (
            path.read_text().splitlines()[0]
            == "# yaml-language-server: $schema=../../vitgraph/spec.schema.json"
        ), path.name


def test_every_block_kind_and_documented_field_is_in_the_schema():
    schema = spec_schema()
    rules = {
        r["if"]["properties"]["kind"]["const"]: r["then"] for r in schema["$defs"]["node"]["allOf"]
    }
    reg = registry()
    assert sorted(rules) == reg.kinds()
    assert schema["$defs"]["node"]["properties"]["kind"]["anyOf"][0]["enum"] == reg.kinds()
    for kind, cls in reg.primitives.items():
        docs = field_docs(cls)
        for name in cls.model_fields:
            if name == "kind":
                continue
            prop = rules[kind]["properties"][name]
            assert {"$ref": "#/$defs/expression"} in prop["anyOf"], (kind, name)
            if name in docs:
                assert prop["description"] == docs[name], (kind, name)
    assert rules["linear_head"]["required"] == ["classes"]
    assert rules["encoder_layer"]["required"] == ["heads"]


def test_schema_knows_the_top_level_keys_and_the_edit_verbs():
    schema = spec_schema()
    assert set(schema["properties"]) >= {
        "vitgraph",
        "name",
        "paper",
        "default",
        "input",
        "args",
        "variants",
        "graph",
        "extends",
        "edits",
    }
    verbs = [next(iter(o["required"])) for o in schema["properties"]["edits"]["items"]["oneOf"]]
    assert verbs == ["insert_after", "insert_before", "replace", "update", "remove", "rename"]
    assert schema["properties"]["name"]["description"] == "Family name, e.g. ``vit``."


def test_cli_prints_the_schema(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "vitgraph spec"
