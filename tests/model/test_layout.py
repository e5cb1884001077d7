"""Where the model API cuts a model follows the inferred types, not the kinds (#24
item 1): a layout declared by a stage holds only while its tokens are still what it
made, and a composition the API cannot split is a located SpecError at build time."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch

import vitgraph
from vitgraph import SpecError
from vitgraph.model.layout import FEATURE_LAYOUTS, cache, cached_layout

SWIN_THEN_CAIT = """\
vitgraph: 1
name: swin_cait
input: {channels: 3, size: 56}
graph:
  - {id: patch_embed, kind: patch_embed, patch: 4, dim: 32, norm: true}
  - {id: layers, kind: swin_stage, depth: 2, heads: 2, window: 7}
  - {id: cls_token, kind: cls_token}
  - {id: blocks_token_only, kind: class_attention_layer, repeat: 2, heads: 2}
  - {id: norm, kind: layernorm}
  - {id: pool, kind: take_cls}
  - {id: head, kind: linear_head, classes: 10}
"""


def built(text: str, name: str = "spec.yaml") -> torch.nn.Module:
    return vitgraph.load(name, text=text).build().eval()


def test_swin_stages_then_a_class_token_and_class_attention_give_plain_tokens():
    # the model: forward_features died unflattening 197 tokens into 14x14
    model = built(SWIN_THEN_CAIT)
    x = torch.randn(2, 3, 56, 56)
    features = model.forward_features(x)
    assert features.shape == (2, 1 + 14 * 14, 32)
    assert cached_layout(model).formats == [None]
    torch.testing.assert_close(model.forward_head(features), model(x), rtol=0, atol=0)


def test_swin_features_are_still_nhwc_maps_when_nothing_changes_the_tokens():
    model = built(
        SWIN_THEN_CAIT.replace("  - {id: cls_token, kind: cls_token}\n", "")
        .replace(
            "  - {id: blocks_token_only, kind: class_attention_layer, repeat: 2, heads: 2}\n", ""
        )
        .replace("kind: take_cls", "kind: mean_pool")
    )
    x = torch.randn(2, 3, 56, 56)
    assert cached_layout(model).formats == [FEATURE_LAYOUTS["nhwc"]]
    features = model.forward_features(x)
    assert features.shape == (2, 14, 14, 32)
    torch.testing.assert_close(model.forward_head(features), model(x), rtol=0, atol=0)


PIT = """\
vitgraph: 1
name: pit_like
input: {channels: 3, size: 32}
graph:
  - {id: patch_embed, kind: patch_embed, patch: 4, dim: 32}
  - {id: cls_token, kind: cls_token}
  - {id: transformers, kind: pit_stage, repeat: 2, pool: "${i > 0}", depth: 1, heads: 2,
     head_dim: 16}
  - {id: norm, kind: layernorm}
  - {id: pool, kind: POOL}
  - {id: head, kind: linear_head, classes: 10}
"""


@pytest.mark.parametrize(("pool", "tokens"), [("take_cls", 1), ("mean_pool", 1 + 4 * 4)])
def test_pit_features_keep_only_the_prefix_when_the_head_reads_nothing_else(pool, tokens):
    # PiT's prefix-only features would leave mean_pool nothing to average (it gave NaN)
    model = built(PIT.replace("POOL", pool))
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (2, tokens, 64)
    torch.testing.assert_close(model.forward_head(features), model(x), rtol=0, atol=0)


def test_a_head_that_reads_the_tokens_before_the_norm_gets_them_as_features_too():
    text = """\
vitgraph: 1
name: stray
input: {channels: 3, size: 32}
graph:
  - {id: patch_embed, kind: patch_embed, patch: 8, dim: 32}
  - {id: cls_token, kind: cls_token}
  - {id: dist_token, kind: dist_token}
  - {id: blocks, kind: encoder_layer, heads: 2}
  - {id: norm, kind: layernorm}
  - {id: pool, kind: take_cls}
  - {id: head, kind: linear_head, classes: 10}
  - {id: head_dist, kind: distill_head, inputs: [head, blocks]}
"""
    model = built(text)
    assert cached_layout(model).features == ["norm", "blocks.residual2"]
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert [tuple(f.shape) for f in features] == [(2, 18, 32), (2, 18, 32)]
    torch.testing.assert_close(model.forward_head(features), model(x), rtol=0, atol=0)


MULTI = """\
vitgraph: 1
name: multi
input: {channels: 3, size: 32}
graph:
  - {id: patch_embed, kind: patch_embed, patch: 8, dim: 32}
  - {id: cls_token, kind: cls_token}
  - {id: blocks, kind: encoder_layer, heads: 2}
  - {id: norm, kind: layernorm}
  - {id: pool, kind: take_cls}
  - {id: head, kind: linear_head, classes: 10}
outputs: [head, OUT]
"""


@pytest.mark.parametrize("second", ["norm", "pool"])
def test_outputs_computed_from_the_features_come_back_from_forward_head(second):
    model = built(MULTI.replace("OUT", second))
    x = torch.randn(2, 3, 32, 32)
    logits, extra = model.forward_head(model.forward_features(x))
    expected = model(x)
    torch.testing.assert_close(logits, expected[0], rtol=0, atol=0)
    torch.testing.assert_close(extra, expected[1], rtol=0, atol=0)


def test_an_output_computed_before_the_features_is_a_located_error_at_build_time():
    # forward_head died with a KeyError on 'blocks_residual2'
    graph = vitgraph.load("multi.yaml", text=MULTI.replace("OUT", "blocks"))
    with pytest.raises(SpecError) as info:
        graph.build()
    assert str(info.value) == (
        "multi.yaml:11:17: outputs: output 'blocks' is computed before the features "
        "(norm), so forward_head could not return it\n"
        "  hint: name 'blocks' under features: (Graph.build(features=True) returns the "
        "taps), or output what the head computes"
    )


def test_a_model_is_freed_once_unreferenced_after_its_cached_plans_were_made():
    model = vitgraph.build("vit_ti_16", overrides={"image_size": 32, "depth": 2})
    model.forward_intermediates(torch.randn(1, 3, 32, 32))
    model.set_grad_checkpointing(True)
    model.train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


def test_a_copy_of_a_model_does_not_share_its_cached_plans():
    model = vitgraph.build("vit_ti_16", overrides={"image_size": 32, "depth": 2})
    cached_layout(model)
    assert cache(copy.deepcopy(model)) == {} and cache(copy.copy(model)) == {}
    assert "layout" in cache(model)
