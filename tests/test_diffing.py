"""``vitgraph diff``: added, removed and changed nodes, counts, carried weights."""

from __future__ import annotations

import json

import vitgraph
from vitgraph.cli import main
from vitgraph.diffing import format_diff


def test_vit_s_to_deit_s_distilled_is_the_token_the_head_and_the_table():
    result = vitgraph.diff("vit_s_16", "deit_s_distilled")
    assert [d.id for d in result.added] == ["dist_token", "head_dist"]
    assert [(d.kind_after, d.count_after) for d in result.added] == [
        ("dist_token", 384),
        ("distill_head", 385_000),
    ]
    assert result.removed == []
    assert [d.id for d in result.changed] == ["pos_embed"]
    assert result.changed[0].weights == {"pos_embed": ([1, 197, 384], [1, 198, 384])}
    assert result.params == (22_050_664, 22_436_432)
    assert result.param_delta == 22_436_432 - 22_050_664 == 385_768
    assert result.reshaped == ["pos_embed"]
    assert result.new == ["dist_token", "head_dist.bias", "head_dist.weight"]
    assert len(result.carried) == 151 and result.dropped == []
    # DeiT trains with stochastic depth and without ViT's (rate 0) dropout: listed apart
    assert {d.id for d in result.training} >= {"pos_drop", "blocks.11.drop_path1"}


def test_diff_text_names_each_change_and_the_delta_to_the_unit():
    text = format_diff(vitgraph.diff("vit_s_16", "deit_s_distilled"))
    assert "  + dist_token  dist_token  0 -> 384 params (+384)" in text
    assert "  + head_dist  distill_head  0 -> 385,000 params (+385,000)" in text
    assert (
        "  ~ pos_embed  learned_pos  75,648 -> 76,032 params (+384)  "
        "(pos_embed 1x197x384 -> 1x198x384)"
    ) in text
    assert "params: 22,050,664 -> 22,436,432 (+385,768)" in text
    assert (
        "weights: 151 of 155 tensors carry over; reshaped: pos_embed; new: dist_token, "
        "head_dist.bias, head_dist.weight" in text
    )


def test_diff_collapses_identical_repeats_and_reports_param_changes():
    small = {"depth": 3}
    result = vitgraph.diff(
        vitgraph.load("vit_ti_16", overrides=small), vitgraph.load("vit_s_16", overrides=small)
    )
    text = format_diff(result)
    assert (
        "  ~ blocks.*.attn ×3  mhsa  148,224 -> 591,360 params each (+443,136 each, "
        "+1,329,408 in all)  (dim 192 -> "
        "384; heads 3 -> 6;" in text
    )
    assert result.carried == ["head.bias"]  # 1000 classes either way


def test_diff_of_a_graph_with_itself_is_empty():
    graph = vitgraph.load("vit_ti_16", overrides={"depth": 2})
    result = vitgraph.diff(graph, graph)
    assert (result.added, result.removed, result.changed, result.training) == ([], [], [], [])
    assert result.param_delta == 0 and len(result.carried) == len(
        graph.build(device="meta").state_dict()
    )


def test_cli_diff_json_and_spec_errors(capsys):
    assert main(["diff", "vit_s_16", "deit_s_distilled", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["param_delta"] == 385_768
    assert [d["id"] for d in data["added"]] == ["dist_token", "head_dist"]
    assert [d["id"] for d in data["changed"]] == ["pos_embed"]
    assert main(["diff", "vit_s_16", "deit_s_distiled"]) == 2
    assert "did you mean 'deit_s_distilled'?" in capsys.readouterr().err


def test_a_diff_prints_from_python_as_the_cli_prints_it():
    small = {"depth": 2, "input.size": 32}
    result = vitgraph.diff(
        vitgraph.load("vit_ti_16", overrides=small),
        vitgraph.load("deit_ti_distilled", overrides=small),
    )
    assert str(result) == format_diff(result)
    assert str(result).startswith("vit_ti_16 (vit) -> deit_ti_distilled (deit)\nadded:")


def test_removing_a_node_that_computes_nothing_appears_in_the_diff():
    small = {"depth": 2, "input.size": 32}
    before = vitgraph.load("deit_s", overrides=small)  # head_dist is there, when: false
    after = vitgraph.load("deit_s", overrides=small).remove("head_dist")
    result = vitgraph.diff(before, after)
    assert result.passive == (["head_dist"], [])
    assert "removed, computing nothing (identity or when: false): head_dist" in str(result)
