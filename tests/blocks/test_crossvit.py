"""CrossViT (arXiv:2103.14899): the spec's input size, its two-branch summary rows and
feature taps (counts and parity against timm: tests/families.py)."""

from __future__ import annotations

import vitgraph


def test_crossvit_9_takes_240_pixel_images():
    assert vitgraph.load("crossvit_9").input_shape == (3, 240, 240)


def test_crossvit_summary_has_rows_for_each_branch():
    rows = [r.id for r in vitgraph.load("crossvit_9").summary().grouped()]
    assert rows[:7] == [
        "patch_embed_small",
        "cls_token_small",
        "pos_embed_small",
        "resize",
        "patch_embed_large",
        "cls_token_large",
        "pos_embed_large",
    ]
    assert rows[-7:] == [
        "norm_small",
        "pool_small",
        "head_small",
        "norm_large",
        "pool_large",
        "head_large",
        "head",
    ]


def test_crossvit_feature_taps_are_both_branches():
    assert vitgraph.load("crossvit_9").feature_shapes() == {
        "norm_small": (401, 128),
        "norm_large": (197, 256),
    }


def test_crossvit_summary_shows_both_streams_leaving_the_encoders():
    from vitgraph.render import _branch_outputs

    graph = vitgraph.load("crossvit_9")
    assert _branch_outputs(graph) == {"blocks": [("large", (197, 256)), ("small", (401, 128))]}
    grouped = {r.id: r for r in graph.summary().grouped()}
    assert grouped["blocks"].kind == "crossvit_block" and grouped["blocks"].count == 3
