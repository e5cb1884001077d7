"""Graph editing verbs: each one's success and its located errors."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import line_of
from vitgraph import SpecError
from vitgraph.spec.catalog import shipped_specs

DEIT = shipped_specs()["deit"]
VIT = shipped_specs()["vit"]
# where the errors below are located: the entries of the shipped specs, found by text
AT_BLOCKS = f"{VIT}:{line_of(VIT, 'id: blocks')}:5"
AT_LAYER = f"{VIT}:{line_of(VIT, 'kind: encoder_layer')}:11"
AT_HEAD = f"{VIT}:{line_of(VIT, 'id: head,')}:22"
AT_HEAD_DIST = f"{DEIT}:{line_of(DEIT, 'id: head_dist')}:27"


def small(variant: str = "vit_s_16", **extra) -> vitgraph.Graph:
    return vitgraph.load(variant, overrides={"depth": 2, "input.size": 32, **extra})


def error_of(action) -> str:
    with pytest.raises(SpecError) as info:
        action()
    return str(info.value)


# -- find -----------------------------------------------------------------------------


def test_find_by_id_pattern_kind_and_predicate():
    graph = small()
    assert graph.find("blocks.*.attn") == ["blocks.0.attn", "blocks.1.attn"]
    assert graph.find("blocks") == ["blocks"]
    assert graph.find("blocks.*") == ["blocks.0", "blocks.1"]
    assert graph.find("**.fc*") == []
    assert graph.find(kind="layernorm") == [
        "blocks.0.norm1",
        "blocks.0.norm2",
        "blocks.1.norm1",
        "blocks.1.norm2",
        "norm",
    ]
    assert graph.find(kind="encoder_layer") == ["blocks", "blocks.0", "blocks.1"]
    assert graph.find(where=lambda n: n.kind == "linear_head") == ["head"]
    assert graph.find("blocks.*.*", kind="mlp") == ["blocks.0.mlp", "blocks.1.mlp"]


# -- update ---------------------------------------------------------------------------


def test_update_of_every_repeat_is_written_once_on_the_group():
    graph = small()
    graph.update("blocks.*.attn", qkv_bias=False)
    assert all(not graph.node(f"blocks.{i}.attn").params.qkv_bias for i in range(2))
    assert "qkv_bias: false" in graph.to_yaml().split("\ngraph:")[1]
    assert "\n    at:" not in graph.to_yaml()


def test_update_of_one_repeat_is_written_under_at():
    graph = small()
    graph.update("blocks.1.attn", qkv_bias=False)
    assert graph.node("blocks.0.attn").params.qkv_bias
    assert not graph.node("blocks.1.attn").params.qkv_bias
    assert "      1: {qkv_bias: false}" in graph.to_yaml()


def test_update_of_a_top_level_node_changes_the_count():
    graph = small()
    before = graph.summary().params
    graph.update("head", classes=10)
    assert graph.summary().params == before - 990 * 385


def test_update_of_a_param_the_composite_fixes_is_located_with_the_composite_params():
    message = error_of(lambda: small().update("blocks.0.norm1", affine=False))
    assert message == (
        f"{AT_LAYER}: blocks.0.norm1: 'affine' of 'norm1' is not set inside composite "
        "'encoder_layer', not one of its params\n"
        "  hint: params of encoder_layer: heads, attention, mlp_ratio, qkv_bias, proj_bias, "
        "head_dim, attn_drop, proj_drop, drop_path, norm, norm_eps, mlp_bias, qk_norm, "
        "qk_norm_eps, mlp, mlp_packed, mlp_gate_last, causal, rope, rope_ref_grid, "
        "rope_temperature, qkv_fused, inner_norm, rel_pos, rel_pos_hidden, mlp_norm, "
        "layer_scale, act, window, shift, sr_ratio, kernel, stride_kv"
    )


def test_an_edit_that_breaks_shapes_is_reported_at_the_downstream_node_with_the_numbers():
    graph = small()
    message = error_of(lambda: graph.update("blocks.1.attn", heads=5))
    assert message.startswith(
        f"{AT_BLOCKS}: blocks.1.attn: heads 5 must divide the token width 384"
    )
    message = error_of(lambda: graph.replace("pool", "layernorm"))
    assert message == (
        f"{AT_HEAD}: head: linear_head takes a vector, but receives tokens "
        "5x384, grid 2x2, +1 prefix"
    )
    assert graph.node("pool").kind == "take_cls"  # a failed edit leaves the graph as it was


def test_update_of_nothing_names_the_pattern():
    message = error_of(lambda: small().update("heads", classes=3))
    assert message == (
        f"{VIT}: heads: update: nothing matches 'heads' (did you mean "
        "'head'?)\n  hint: ids look like 'head', 'blocks' (a repeat group), "
        "'blocks.3' or 'blocks.*.attn'"
    )


# -- replace --------------------------------------------------------------------------


def test_replace_inside_a_composite_sets_the_composite_params():
    graph = small()
    graph.replace(kind="layernorm", with_kind="layernorm")  # no-op edit on norms
    graph.replace("blocks.*.attn", "mhsa", qkv_bias=False)
    assert "qkv_bias: false" in graph.to_yaml()
    assert not graph.node("blocks.0.attn").params.qkv_bias


def test_replace_keeps_the_params_the_new_kind_has():
    graph = small()
    graph.replace("pool", "mean_pool")
    assert graph.node("pool").kind == "mean_pool"
    graph.replace("pos_embed", "sincos2d_pos")
    assert "pos_embed" not in graph.build(device="meta").state_dict()


def test_replacing_with_an_incompatible_kind_is_an_error_naming_the_params():
    message = error_of(lambda: small().replace("blocks.*.attn", "layernorm"))
    assert message == (
        f"{AT_LAYER}: blocks.0.attn: cannot replace mhsa with layernorm: layernorm has no "
        "param 'heads', 'proj_drop'\n"
        "  hint: params of layernorm: affine, eps, scale_init, zero_init"
    )


def test_replacing_a_two_input_node_with_a_one_input_kind_is_an_error():
    message = error_of(lambda: small("deit_s_distilled").replace("head_dist", "linear_head"))
    assert message == (
        f"{AT_HEAD_DIST}: head_dist: cannot replace distill_head with "
        "linear_head: linear_head takes 1 input(s), 'head_dist' has 2"
    )


def test_replacing_with_an_unknown_kind_suggests_the_nearest():
    message = error_of(lambda: small().replace("pool", "mean_pol"))
    assert "unknown block kind 'mean_pol' (did you mean 'mean_pool'?)" in message


# -- insert ---------------------------------------------------------------------------


def test_insert_after_a_node_moves_its_users_to_the_new_node():
    graph = small()
    graph.insert_after("cls_token", {"id": "dist_token", "kind": "dist_token"})
    assert graph.node("dist_token").inputs == ["cls_token"]
    assert graph.node("pos_embed").inputs == ["dist_token"]
    assert graph.build(device="meta").state_dict()["pos_embed"].shape == (1, 6, 384)


def test_insert_after_one_repeat_feeds_the_next_repeat():
    graph = small(depth=3)
    graph.insert_after("blocks.0", {"id": "peg", "kind": "layernorm"})
    assert graph.node("peg").inputs == ["blocks.0.residual2"]
    assert graph.node("blocks.1.norm1").inputs == ["peg"]
    assert graph.node("blocks.1.residual1").inputs == ["peg", "blocks.1.drop_path1"]
    assert graph.node("norm").inputs == ["blocks.2.residual2"]
    assert [n.id for n in graph.nodes].index("peg") == [n.id for n in graph.nodes].index(
        "blocks.1.norm1"
    ) - 1
    model = graph.build().eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 1000)


def test_insert_before_takes_the_single_input():
    graph = small()
    graph.insert_before("norm", {"id": "pre", "kind": "layer_scale", "init": 0.1})
    assert graph.node("pre").inputs == ["blocks.1.residual2"]
    assert graph.node("norm").inputs == ["pre"]
    graph.insert_before("blocks.1", {"id": "mid", "kind": "identity"})
    assert graph.node("blocks.1.norm1").inputs == ["mid"]


def test_insert_needs_one_target_a_fresh_id_and_a_known_kind():
    graph = small()
    assert "insert_after needs one node, but 'blocks.*' matches 2" in error_of(
        lambda: graph.insert_after("blocks.*", {"id": "x", "kind": "identity"})
    )
    assert "insert_after: id 'norm' is already used" in error_of(
        lambda: graph.insert_after("head", {"id": "norm", "kind": "identity"})
    )
    assert "is inside a composite block" in error_of(
        lambda: graph.insert_after("blocks.0.attn", {"id": "x", "kind": "identity"})
    )
    message = error_of(lambda: graph.insert_before("head_dist", {"id": "x", "kind": "identity"}))
    assert "nothing matches 'head_dist'" in message


def test_insert_before_a_two_input_node_is_an_error():
    graph = small("deit_s_distilled")
    message = error_of(lambda: graph.insert_before("head_dist", {"id": "x", "kind": "identity"}))
    assert message == (
        f"{AT_HEAD_DIST}: head_dist: insert_before: 'head_dist' takes 2 inputs "
        "(head, norm); name the input to insert after instead"
    )


# -- remove ---------------------------------------------------------------------------


def test_remove_rewires_the_users_to_the_input():
    graph = small()
    graph.remove("pos_drop")
    graph.remove("pos_embed")
    assert graph.node("blocks.0.norm1").inputs == ["cls_token"]
    assert "pos_embed" not in graph.build(device="meta").state_dict()


def test_removing_a_sink_with_two_inputs_makes_its_first_input_the_output():
    graph = small("deit_s_distilled")
    graph.remove("head_dist")
    assert graph.outputs == ["head"]
    model = graph.build(device="meta")
    assert not any(k.startswith("head_dist") for k in model.state_dict())
    assert graph.output_shape == (1000,)


def test_removing_a_node_switched_off_by_when_drops_it_from_the_spec():
    graph = small("deit_s")
    graph.remove("head_dist")
    assert "head_dist" not in graph.to_yaml().split("\n", 1)[1]  # past the origin line
    assert graph.outputs == ["head"]


def test_removing_one_repeat_is_an_error_with_the_fix():
    message = error_of(lambda: small().remove("blocks.1"))
    assert message == (
        f"{AT_BLOCKS}: blocks.1: cannot remove one repeat of 'blocks'\n"
        "  hint: change its count: update('blocks', repeat=...)"
    )


# -- rename ---------------------------------------------------------------------------


def test_rename_a_group_renames_its_weights_and_references():
    graph = small("deit_s_distilled")
    graph.rename("blocks", "layers")
    graph.rename("norm", "final_norm")
    keys = graph.build(device="meta").state_dict()
    assert "layers.1.attn.qkv.weight" in keys and "final_norm.weight" in keys
    assert graph.node("head_dist").inputs == ["head", "final_norm"]


def test_rename_errors_are_located():
    graph = small()
    assert "rename: id 'head' is already used" in error_of(lambda: graph.rename("norm", "head"))
    assert "a single repeat cannot be renamed" in error_of(lambda: graph.rename("blocks.0", "x"))
    assert "must be a name without spaces" in error_of(lambda: graph.rename("norm", "a.b"))


# -- nested repeat groups (composites that repeat inside) -------------------------------


def test_edits_of_a_repeat_inside_a_composite_cover_every_repeat():
    from vitgraph.spec.catalog import variant_index

    if "swin_t" not in variant_index():
        pytest.skip("needs the swin spec (multiscale family)")
    graph = vitgraph.load("swin_t")
    before = graph.summary().params
    graph.update("layers.*.blocks.*.attn", qkv_bias=False)
    assert before - graph.summary().params == 3 * (2 * 96 + 2 * 192 + 6 * 384 + 2 * 768)
    assert "    qkv_bias: false" in graph.to_yaml()
    graph.update("layers.2.blocks.*.mlp", ratio=2.0)  # lands as layers' at: {2: ...}
    assert "      2: {mlp_ratio: 2.0}" in graph.to_yaml()
    message = error_of(lambda: graph.update("layers.2.blocks.1.attn", qkv_bias=True))
    assert (
        "'layers.2.blocks.1.attn' is one repeat of 'layers.2.blocks', inside a composite "
        "block: an edit there applies to every repeat ('layers.2.blocks.*.attn')" in message
    )
