"""Authoring without dead ends (#24 item 3): what an edit writes back names itself and
keeps only the variants that still validate, every lookup of a node proposes the nearest
id, and a hint proposes values that fit the whole graph."""

from __future__ import annotations

import pytest
import yaml

import vitgraph
from tests.helpers import ROOT, line_of
from vitgraph import SpecError
from vitgraph.errors import UnknownNode
from vitgraph.spec.catalog import shipped_specs

SWIN = shipped_specs()["swin"]
TWINS = shipped_specs()["twins"]


def message_of(action) -> str:
    with pytest.raises(SpecError) as info:
        action()
    return str(info.value)


def test_to_yaml_of_an_edit_leaves_out_the_variants_it_breaks_and_names_the_derived_spec():
    graph = vitgraph.load("vit_s_16")
    graph.update("blocks", heads=24)  # 384 / 24 = 16, but vit_l_16's 1024 does not split
    text = graph.to_yaml()
    assert text.splitlines()[0] == "# derived from vit (vit_s_16) by: update('blocks', heads=24)"
    data = yaml.safe_load(text)
    assert data["name"] == "vit_edited"
    assert list(data["variants"]) == ["vit_ti_16", "vit_s_16", "vit_b_16", "vit_b_32"]
    for variant in data["variants"]:
        assert vitgraph.load("derived.yaml", variant, text=text).name == "vit_edited"
    assert yaml.safe_load(graph.to_yaml("vit_s_24_heads"))["name"] == "vit_s_24_heads"


def test_to_yaml_of_an_unedited_graph_keeps_its_name_and_every_variant():
    data = yaml.safe_load(vitgraph.load("vit_s_16").to_yaml())
    assert data["name"] == "vit" and "vit_l_16" in data["variants"]


def test_graph_node_of_an_unknown_id_proposes_the_nearest_and_is_still_a_key_error():
    graph = vitgraph.load("vit_s_16", overrides={"depth": 2})
    with pytest.raises(UnknownNode) as info:
        graph.node("blocks.0.atn")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == (
        f"{shipped_specs()['vit']}: blocks.0.atn: no node 'blocks.0.atn' (did you mean "
        "'blocks.0.attn'?)\n  hint: ids look like 'head' or 'blocks.3.attn' (Graph.find lists them)"
    )
    assert "is a repeat group or composite block" in message_of(lambda: graph.node("blocks.1"))


def test_set_of_a_mistyped_node_proposes_the_node_with_its_param():
    message = message_of(lambda: vitgraph.load("vit_s_16", overrides={"hed.classes": 3}))
    assert message.startswith(
        "<--set>: hed.classes: 'hed.classes' names no arg, input field or graph node "
        "(did you mean 'head.classes'?)"
    )


def test_set_of_a_node_inside_a_group_says_which_entry_param_to_set():
    message = message_of(lambda: vitgraph.load("vit_s_16", overrides={"blocks.3.attn.heads": 3}))
    assert message == (
        "<--set>: blocks.3.attn.heads: --set reaches the params of the spec's entries "
        "('blocks.heads'), not of the nodes inside 'blocks'\n"
        "  hint: set 'blocks.heads' (every repeat and inner node reading it follows), or edit "
        "one node with Graph.update('blocks.3.attn', heads=...)"
    )


def test_a_swin_window_hint_proposes_only_windows_that_fit_every_stage():
    # 192 pixels: grids 48, 24, 12, 6; 8 divides the first but not the third
    message = message_of(lambda: vitgraph.load("swin_t", overrides={"image_size": 192}))
    assert message == (
        f"{SWIN}:{line_of(SWIN, 'window: $window')}:13: layers.0.blocks.0.attn: window 7 "
        "must divide the 48x48 grid it receives (48 leaves 6)\n"
        "  hint: use a window from 1, 2, 3, 6, 12, or change the input size"
    )
    for window in (1, 2, 3, 6, 12):
        vitgraph.load("swin_t", overrides={"image_size": 192, "window": window})


def test_a_window_read_bare_in_every_twins_stage_is_proposed_only_if_it_fits_them_all():
    # 192 pixels: grids 48, 24, 12, 6; before, 4, 8, 12, 16 and 24 were proposed too
    message = message_of(lambda: vitgraph.load("twins_svt_s", overrides={"image_size": 192}))
    assert message.endswith(
        "stage1.first.attn: window 7 must divide the 48x48 grid it receives\n"
        "  hint: use a window from 2, 3, 6"
    )
    for window in (2, 3, 6):
        vitgraph.load("twins_svt_s", overrides={"image_size": 192, "window": window})


def test_the_shipped_edit_example_takes_replace_params_in_set():
    text = (ROOT / "examples" / "edits" / "cct_tokenizer.yaml").read_text()
    assert "    set: {layers: 2, kernel: 7}" in text


def test_update_sets_the_inputs_of_an_entry_and_points_other_keys_at_their_verb():
    graph = vitgraph.load("deit_s_distilled", overrides={"depth": 2, "input.size": 32})
    graph.update("head_dist", inputs=["head", "blocks"])
    assert graph.node("head_dist").inputs == ["head", "blocks.1.residual2"]
    message = message_of(lambda: graph.update("head", id="x"))
    assert message.endswith(
        "head: update sets params, inputs, repeat, when and stochastic_depth; 'id' is not one\n"
        "  hint: rename a node with rename(old, new)"
    )


def test_a_chosen_kind_no_kind_of_whose_role_takes_the_param_says_only_to_leave_it_out():
    # before: "choose another attention that takes it: " followed by nothing
    message = message_of(
        lambda: vitgraph.load("vit_ti_16", overrides={"blocks.attention": "layernorm"})
    )
    assert message.endswith(
        "blocks.0.heads: encoder_layer's heads does not reach its attention layernorm, which "
        "takes no heads\n  hint: leave heads out: no norm kind takes heads"
    )
