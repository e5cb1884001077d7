"""``Graph.build(weights_from=old)``: after an edit, every weight whose node (id and kind)
and shape are unchanged is carried over, asserted key by key; the rest is listed."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import redraw_
from vitgraph.spec.catalog import registry

SMALL = {"depth": 2, "image_size": 32}


def trained_deit_s():
    return redraw_(vitgraph.load("deit_s", overrides=SMALL).build())  # stands in for training


def assert_carried_outside_attention(old, new):
    old_state, new_state = old.state_dict(), new.state_dict()
    attention = {k for k in new_state if ".attn." in k}
    for key in set(new_state) - attention:
        assert torch.equal(new_state[key], old_state[key]), key
    assert set(new.vitgraph_carry.reinitialized) <= attention
    assert set(new.vitgraph_carry.carried) | set(new.vitgraph_carry.reinitialized) == set(new_state)
    return attention


def test_attention_edit_keeps_every_weight_outside_attention():
    # re-attention is not on this branch yet: a head_dim change re-shapes qkv and proj,
    # the same kind of attention edit (test_reattention_edit_... runs once it exists)
    old = trained_deit_s()
    edited = vitgraph.load("deit_s", overrides={**SMALL, "blocks.head_dim": 32})
    new = edited.build(weights_from=old)
    attention = assert_carried_outside_attention(old, new)
    assert new.vitgraph_carry.reinitialized == [
        f"blocks.{i}.attn.{name}"
        for i in range(2)
        for name in ("qkv.weight", "qkv.bias", "proj.weight")
    ]
    assert "blocks.0.attn.proj.bias" in new.vitgraph_carry.carried  # same node, same shape
    assert attention - set(new.vitgraph_carry.reinitialized) == {
        "blocks.0.attn.proj.bias",
        "blocks.1.attn.proj.bias",
    }


def reattention_kind() -> str | None:
    return next((k for k in ("reattention", "re_attention") if k in registry().kinds()), None)


@pytest.mark.skipif(reattention_kind() is None, reason="no re-attention block kind yet")
def test_reattention_edit_keeps_every_weight_outside_attention():
    old = trained_deit_s()
    edited = vitgraph.load("deit_s", overrides={**SMALL, "blocks.attention": reattention_kind()})
    new = edited.build(weights_from=old)
    assert_carried_outside_attention(old, new)
    assert all(".attn." in k for k in new.vitgraph_carry.reinitialized)
    assert new.vitgraph_carry.reinitialized  # a new kind: its weights start fresh


def test_unchanged_graph_carries_everything_and_gives_the_same_logits():
    old = trained_deit_s().eval()
    new = vitgraph.load("deit_s", overrides=SMALL).build(weights_from=old).eval()
    assert new.vitgraph_carry.reinitialized == []
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(new(x), old(x))


def test_new_class_count_reinitialises_only_the_head():
    old = trained_deit_s()
    new = vitgraph.load("deit_s", overrides={**SMALL, "classes": 10}).build(weights_from=old)
    assert new.vitgraph_carry.reinitialized == ["head.weight", "head.bias"]
