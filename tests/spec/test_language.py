"""The spec language without tricks (#14 item 6): ``stochastic_depth:`` (timm's ramp, once
per spec), ``when:`` (an optional node), composites with several named outputs that chain
when repeated, and typed, documented composite params; the specs written before them
(tests/specs/legacy/) still build the same models."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

import vitgraph
from tests.helpers import TESTS
from vitgraph import SpecError
from vitgraph.schema import spec_schema
from vitgraph.spec.catalog import registry
from vitgraph.spec.composites import load_composite
from vitgraph.vocabulary import stochastic_depth_fields

HERE = TESTS  # the legacy specs and bad fixtures live under tests/specs/
LEGACY = sorted((HERE / "specs" / "legacy").glob("*.yaml"))
BAD_COMPOSITES = sorted((HERE / "specs" / "bad" / "composites").glob("*.yaml"))


def test_the_fixture_folders_are_found():
    # the parametrised tests below run once per file: an empty glob would run none
    assert len(LEGACY) >= 10 and len(BAD_COMPOSITES) >= 4


TINY = """\
vitgraph: 1
name: tiny
input: {channels: 3, size: 32}
args: {dim: 64, depth: 4, heads: 2, drop_path_rate: 0.3, distilled: false}
stochastic_depth: {rate: $drop_path_rate}
graph:
  - {id: patch_embed, kind: patch_embed, patch: 8, dim: $dim}
  - {id: cls_token, kind: cls_token}
  - {id: dist_token, kind: dist_token, when: $distilled}
  - {id: pos_embed, kind: learned_pos}
  - {id: blocks, kind: encoder_layer, repeat: $depth, heads: $heads}
  - {id: norm, kind: layernorm}
  - {id: pool, kind: take_cls}
  - {id: head, kind: linear_head, classes: 10}
  - {id: head_dist, kind: distill_head, inputs: [head, norm], when: $distilled}
"""


def tiny(text: str = TINY, **overrides) -> vitgraph.Graph:
    return vitgraph.load("tiny.yaml", text=text, overrides=overrides)


def rates(graph: vitgraph.Graph) -> dict[str, float]:
    return {
        node.id: getattr(node.params, field)
        for node in graph.nodes
        for field in stochastic_depth_fields(type(node.params))
    }


# ------------------------------------------------------------------------------ when


def test_a_node_switched_off_by_when_is_absent_and_passes_its_first_input_on():
    graph = tiny()
    ids = [n.id for n in graph.nodes]
    assert "dist_token" not in ids and "head_dist" not in ids
    assert graph.node("pos_embed").inputs == ["cls_token"]
    assert graph.resolve("dist_token") == "cls_token"
    assert graph.outputs == ["head"]  # the last entry, switched off, is its input
    on = tiny(distilled=True)
    assert on.node("pos_embed").inputs == ["dist_token"]
    assert on.summary().params - graph.summary().params == 64 + 64 + 650


def test_when_reads_the_repeat_index_and_can_be_set_from_the_command_line():
    text = TINY.replace("heads: $heads}", "heads: $heads, when: '${i % 2 == 0}'}")
    graph = tiny(text)
    assert sorted({n.id.split(".")[1] for n in graph.nodes if n.id.startswith("blocks.")}) == [
        "0",
        "2",
    ]
    assert graph.node("blocks.2.norm1").inputs == ["blocks.0.residual2"]
    assert "dist_token" in [n.id for n in tiny(**{"dist_token.when": True}).nodes]


def test_a_switched_off_node_still_checks_its_kind_and_params():
    with pytest.raises(SpecError, match="unknown block kind 'dist_tokn'"):
        tiny(TINY.replace("kind: dist_token", "kind: dist_tokn"))
    with pytest.raises(SpecError, match=r"head_dist\.clases: unknown key 'clases'"):
        tiny(TINY.replace("inputs: [head, norm],", "inputs: [head, norm], clases: 3,"))


def test_when_round_trips_and_the_edit_verbs_keep_it():
    graph = vitgraph.load("deit_ti_distilled", overrides={"depth": 2})
    text = graph.to_yaml()
    assert "{id: head_dist, kind: distill_head, inputs: [head, norm], when: $distilled}" in text
    graph.replace("head_dist", "distill_head")  # the entry keeps its when:
    assert "when: $distilled" in graph.to_yaml()
    before = graph.summary().params
    graph.update("head_dist", when=False)
    assert "head_dist" not in [n.id for n in graph.nodes]
    assert before - graph.summary().params == 192 * 1000 + 1000
    again = vitgraph.load("again.yaml", text=graph.to_yaml())
    assert again.summary().params == graph.summary().params


# ------------------------------------------------------------------------------ schedule


def test_the_schedule_is_timms_linspace_over_the_layers():
    graph = tiny()
    expected = torch.linspace(0, 0.3, 4).tolist()
    for i, rate in enumerate(expected):
        assert graph.node(f"blocks.{i}.drop_path1").params.rate == pytest.approx(rate)
        assert graph.node(f"blocks.{i}.drop_path2").params.rate == pytest.approx(rate)
    assert rates(graph)["blocks.3.drop_path1"] == 0.3


def test_an_entry_that_writes_its_drop_path_or_opts_out_keeps_its_own_rates():
    fixed = tiny(TINY.replace("heads: $heads}", "heads: $heads, drop_path: 0.05}"))
    assert set(rates(fixed).values()) == {0.05}
    out = tiny(TINY.replace("heads: $heads}", "heads: $heads, stochastic_depth: false}"))
    assert set(rates(out).values()) == {0.0}
    # an edit of one repeat writes `at: {1: {drop_path: ...}}`: that repeat keeps its rate
    # and the others keep theirs (it still counts as a layer)
    graph = tiny()
    graph.update("blocks.1", drop_path=0.25)
    assert [rates(graph)[f"blocks.{i}.drop_path1"] for i in range(4)] == pytest.approx(
        [0.0, 0.25, 0.2, 0.3]
    )
    # left out of the schedule, the class-attention layers neither drop nor count
    text = TINY.replace(
        "  - {id: norm,",
        "  - {id: extra, kind: encoder_layer, repeat: 2, heads: $heads, stochastic_depth: false}\n"
        "  - {id: norm,",
    )
    graph = tiny(text)
    assert rates(graph)["blocks.3.drop_path1"] == 0.3 and rates(graph)["extra.1.drop_path1"] == 0


def test_the_schedule_rate_follows_the_args_and_the_overrides():
    assert rates(tiny(drop_path_rate=0.6))["blocks.3.drop_path2"] == 0.6
    assert set(rates(tiny(drop_path_rate=0.0)).values()) == {0.0}
    assert rates(tiny(depth=1)) == {"blocks.0.drop_path1": 0.0, "blocks.0.drop_path2": 0.0}


def test_stages_ramp_over_the_sum_of_their_depths():
    graph = vitgraph.load("swin_t", overrides={"drop_path_rate": 0.3})  # depths 2, 2, 6, 2
    layers = [f"layers.{s}.blocks.{j}" for s, d in enumerate([2, 2, 6, 2]) for j in range(d)]
    for k, layer in enumerate(layers):
        assert rates(graph)[f"{layer}.drop_path1"] == pytest.approx(0.3 * k / 11, abs=1e-15)


def test_the_schedule_reaches_the_json_schema_and_round_trips():
    schema = spec_schema()
    assert set(schema["$defs"]["StochasticDepthSchedule"]["properties"]) == {"rate"}
    assert {"when", "stochastic_depth"} <= set(schema["$defs"]["node"]["properties"])
    text = vitgraph.load("vit_s_16").to_yaml()
    assert "stochastic_depth: {rate: $drop_path_rate}\ngraph:" in text


# ------------------------------------------------------------------------------ outputs


def test_a_named_output_is_read_as_group_dot_name():
    graph = vitgraph.load("crossvit_9")
    assert graph.node("norm_small").inputs == ["blocks.2.small"]
    assert graph.resolve("blocks.small") == "blocks.2.small"
    assert graph.resolve("blocks") == "blocks.2.large"
    tnt = vitgraph.load("tnt_s", overrides={"depth": 3})
    assert tnt.resolve("blocks.words") == "blocks.2.words"
    assert tnt.resolve("blocks.1.tokens") == "blocks.1.residual_out2"
    assert vitgraph.load("vt_r18").node("pool").inputs == ["vt.1.tokens"]


def test_a_repeated_multi_output_composite_chains_its_outputs_into_the_next_repeat():
    graph = vitgraph.load("crossvit_9")
    assert graph.node("blocks.0.blocks_small.0.norm1").inputs == ["pos_embed_small"]
    assert graph.node("blocks.0.blocks_large.0.norm1").inputs == ["pos_embed_large"]
    assert graph.node("blocks.1.blocks_small.0.norm1").inputs == ["blocks.0.small"]
    assert graph.node("blocks.1.blocks_large.0.norm1").inputs == ["blocks.0.large"]
    refiner = vitgraph.load("refiner_vit_s", overrides={"depth": 4})
    assert refiner.node("blocks.2.attn").inputs == ["blocks.2.norm1", "blocks.2.map"]
    assert refiner.node("blocks.2.map").inputs == ["blocks.2.norm1", "blocks.0.map"]


def test_the_edit_verbs_work_on_a_chained_crossvit_group():
    graph = vitgraph.load("crossvit_9", overrides={"encoders": 2})
    before = graph.summary().params
    graph.update("blocks", mlp_ratio=2.0)
    assert graph.summary().params < before
    graph.update("blocks.*.blocks_large.*.attn", qkv_bias=False)  # crossvit_block's param
    assert "blocks.1.blocks_small.0.attn.qkv.bias" not in graph.build(device="meta").state_dict()
    graph.replace("blocks", "crossvit_block", depth_small=2)  # inputs and params stay
    assert graph.node("blocks.1.blocks_small.1.norm1").inputs == [
        "blocks.1.blocks_small.0.residual2"
    ]
    assert graph.node("blocks.1.blocks_small.0.norm1").inputs == ["blocks.0.small"]
    graph.insert_after("blocks", {"id": "large_norm", "kind": "layernorm"})
    assert graph.node("norm_large").inputs == ["large_norm"]
    assert graph.node("norm_small").inputs == ["blocks.1.small"]  # blocks.small stays
    graph.rename("blocks", "encoders")  # `blocks.small` follows: `encoders.small`
    assert graph.node("norm_small").inputs == ["encoders.1.small"]
    assert "inputs: [encoders.small]" in graph.to_yaml()
    again = vitgraph.load("again.yaml", text=graph.to_yaml())
    assert again.summary().params == graph.summary().params
    model = graph.build().eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 240, 240)).shape == (1, 1000)


# ------------------------------------------------------------------------------ params


def test_every_shipped_composite_param_is_typed_and_documented():
    undocumented = [
        f"{kind}.{name}"
        for kind, composite in registry().composites.items()
        for name, info in composite.params.model_fields.items()
        if name != "kind" and (not info.description or info.annotation is Any)
    ]
    assert undocumented == []


def test_composite_params_reach_the_schema_with_their_type_and_doc():
    rules = {
        r["if"]["properties"]["kind"]["const"]: r["then"]
        for r in spec_schema()["$defs"]["node"]["allOf"]
    }
    heads = rules["crossvit_block"]["properties"]["heads_small"]
    assert heads["description"] == "Heads of the small-patch branch."
    assert {"exclusiveMinimum": 0, "type": "integer"} in heads["anyOf"][0]["anyOf"]
    assert rules["crossvit_block"]["required"] == ["heads_small", "heads_large"]
    drop = rules["swin_stage"]["properties"]["drop_path_start"]
    assert drop["default"] == 0.0 and "schedule" in drop["description"]


def test_a_composite_still_takes_the_shorthand_params_and_required():
    composite = load_composite(
        "vitgraph: 1\ncomposite: old_style\nrequired: [heads]\nparams:\n  ratio: 2.0\n"
        "  eps: null\ngraph:\n  - {id: attn, kind: mhsa, heads: $heads}\n",
        "old_style.yaml",
    )
    model = composite.params
    assert model(kind="old_style", heads=3, ratio=4).ratio == 4  # an int stays an int
    assert model(kind="old_style", heads="anything", eps=[1]).eps == [1]
    with pytest.raises(ValueError, match="heads"):
        model(kind="old_style")


def test_a_typed_composite_param_has_its_type_default_and_doc():
    composite = load_composite(
        "vitgraph: 1\ncomposite: new_style\ninputs: [a, b]\noutputs: {b: add, a: norm}\n"
        "params:\n  heads: {type: pos_int, doc: Heads.}\n"
        "  rates: {type: 'list[drop_rate]', default: [0.1], doc: Rates.}\n"
        "  drop_path: {type: drop_path_rate, default: 0.0, doc: Stochastic depth.}\n"
        "graph:\n  - {id: norm, kind: layernorm, inputs: [input0]}\n"
        "  - {id: add, kind: add, inputs: [norm, input1]}\n",
        "new_style.yaml",
    )
    fields = composite.params.model_fields
    assert fields["heads"].is_required() and fields["heads"].description == "Heads."
    assert fields["rates"].default == [0.1]
    assert stochastic_depth_fields(composite.params) == ("drop_path",)
    assert composite.outputs == {"b": "add", "a": "norm"} and composite.output == "add"
    assert composite.inputs == ("a", "b") and composite.chains
    with pytest.raises(ValueError):
        composite.params(kind="new_style", heads=0)
    assert composite.params(kind="new_style", heads=None).heads is None  # null: leave out


@pytest.mark.parametrize("path", BAD_COMPOSITES, ids=[p.stem for p in BAD_COMPOSITES])
def test_a_bad_composite_file_is_reported_at_its_line(path: Path):
    expected = path.with_suffix(".expected").read_text().rstrip("\n")
    with pytest.raises(SpecError) as info:
        load_composite(path.read_text(), str(path))
    assert str(info.value) == expected.replace("{file}", str(path))


# ------------------------------------------------------------------------------ legacy


def _folded(graph: vitgraph.Graph) -> dict[str, tuple]:
    """Nodes with the old identity pass-throughs folded away (a switched-off node is
    absent now): id -> (kind, params, inputs), and the nodes the outputs and features are."""
    through = {n.id: n.inputs[0] for n in graph.nodes if n.kind == "identity"}

    def resolve(name: str) -> str:
        while name in through:
            name = through[name]
        return name

    nodes = {
        n.id: (n.kind, n.params.model_dump(), [resolve(i) for i in n.inputs])
        for n in graph.nodes
        if n.kind != "identity"
    }
    taps = [resolve(graph.resolve(name)) for name in [*graph.outputs, *graph.features]]
    return {**nodes, "<outputs and features>": tuple(taps)}


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-15)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("path", LEGACY, ids=[p.stem for p in LEGACY])
def test_a_spec_written_before_builds_the_same_model_as_the_shipped_one(path: Path):
    """Every variant, with a drop-path rate: the same nodes, params (drop-path rates to
    1e-15: a sum ``start + i * step`` against ``rate * k / (L - 1)``) and inputs."""
    legacy = vitgraph.load(path)
    overrides = {"drop_path_rate": 0.3} if "drop_path_rate" in legacy.args else {}
    for variant in legacy.source.document.variants:
        old = vitgraph.load(path, variant=variant, overrides=overrides)
        new = vitgraph.load(variant, overrides=overrides)
        assert _same(_folded(old), _folded(new)), variant


@pytest.mark.parametrize("variant", ["crossvit_9", "refiner_vit_s", "tnt_s", "vt_r18"])
def test_a_spec_written_before_computes_the_same_outputs(variant: str):
    small = {
        "crossvit_9": {"image_size": 48, "large_size": 32, "encoders": 2},
        "refiner_vit_s": {"depth": 4, "image_size": 32},
        "tnt_s": {"depth": 2, "image_size": 32},
        "vt_r18": {"modules": 2, "image_size": 64},
    }[variant]
    family = {"crossvit_9": "crossvit", "refiner_vit_s": "refiner", "tnt_s": "tnt"}
    path = HERE / "specs" / "legacy" / f"{family.get(variant, 'vt')}.yaml"
    new = vitgraph.load(variant, overrides=small)
    old = vitgraph.load(path, variant=variant, overrides=small)
    ours, theirs = new.build().eval(), old.build().eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(1, *new.input_shape)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
