"""PVT v1 (arXiv:2102.12122): the state_dict keys and the feature taps (counts and
parity against HuggingFace's PvtForImageClassification: tests/families.py)."""

from __future__ import annotations

import vitgraph


def test_pvt_state_dict_reads_like_the_official_code():
    small = {"image_size": 64, "depths": [1, 1, 1, 1]}
    keys = set(vitgraph.build("pvt_tiny", overrides=small).state_dict())
    assert {
        "stages.0.patch_embed.proj.weight",
        "stages.0.pos_embed",
        "stages.3.cls_token",
        "stages.0.blocks.0.attn.sr.weight",
        "stages.0.blocks.0.attn.kv.weight",
        "stages.0.blocks.0.attn.norm.weight",
        "head.weight",
    } <= keys
    assert "stages.3.blocks.0.attn.sr.weight" not in keys  # sr_ratio 1 in the last stage


def test_pvt_feature_taps_are_the_four_stage_outputs():
    graph = vitgraph.load("pvt_tiny")
    assert graph.feature_shapes() == {
        "stages.0": (3136, 64),
        "stages.1": (784, 128),
        "stages.2": (196, 320),
        "stages.3": (50, 512),
    }
    rows = [r.id for r in graph.summary().grouped()]
    assert rows[:4] == ["stages.0", "stages.1", "stages.2", "stages.3"]
