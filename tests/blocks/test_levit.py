"""LeViT (arXiv:2104.01136): the distillation heads, the bias table and its eval cache,
and the state_dict keys (counts, the paper's MACs and parity against every timm
``levit*`` model: tests/families.py)."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_

timm = pytest.importorskip("timm")
from vitgraph.interop.timm import from_timm  # noqa: E402


def test_levit_distilled_model_averages_its_heads_in_eval_and_returns_both_in_training():
    model = vitgraph.build("levit_128s", overrides={"image_size": 64, "depths": [1, 1, 1]})
    redraw_(model)
    x = torch.randn(3, 3, 64, 64)
    model.train()
    cls, dist = model(x)
    model.set_distilled_training(False)
    merged_train = model(x)
    assert torch.allclose(merged_train, (cls + dist) / 2, atol=1e-6)
    model.eval()
    merged = model(x)
    assert isinstance(merged, torch.Tensor) and merged.shape == (3, 1000)
    assert not torch.allclose(merged, merged_train, atol=1e-3)  # eval uses running stats


def test_from_timm_keeps_timm_levits_distilled_training_switch():
    reference = timm.create_model("levit_128s", pretrained=False, depth=(1, 1, 1), img_size=64)
    ours = from_timm(reference).train()
    assert isinstance(ours(torch.randn(2, 3, 64, 64)), torch.Tensor)  # timm's default: merged
    reference.set_distilled_training(True)
    assert isinstance(from_timm(reference)(torch.randn(2, 3, 64, 64)), tuple)


def test_levit_bias_table_is_indexed_by_absolute_offsets():
    from vitgraph.blocks.levit import bias_index

    index = bias_index((3, 4), (3, 4), stride=1)
    assert index.shape == (12, 12)
    # query (0, 0) vs key (2, 3): offset (2, 3) -> row 2 of a 4-wide table, column 3
    assert index[0, 11] == 2 * 4 + 3 and index[11, 0] == 2 * 4 + 3
    strided = bias_index((4, 4), (4, 4), stride=2)
    assert strided.shape == (4, 16)
    # query 3 sits at (2, 2); key 0 at (0, 0)
    assert strided[3, 0] == 2 * 4 + 2 and strided[3, 10] == 0


def test_levit_state_dict_keys_follow_the_spec_and_timm_keys_map_onto_them():
    model = vitgraph.build("levit_128s", device="meta")
    keys = set(model.state_dict())
    assert "stage0.0.attn.attention_biases" in keys
    assert "down1.attn_downsample.q.ln.linear.weight" in keys
    assert "head_dist.bn.running_var" in keys
    assert not any("attention_bias_idxs" in k for k in keys)  # derived, not stored


def test_levit_eval_bias_cache_follows_weight_loads_and_mode_switches():
    reference = redraw_(
        timm.create_model("levit_128s", pretrained=False, depth=(1, 1, 1), img_size=64)
    )
    ours = vitgraph.build("levit_128s", overrides={"image_size": 64, "depths": [1, 1, 1]})
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours(x)  # fills the cache with the initial (zero) biases
    ours.load_state_dict(from_timm(reference).state_dict())
    assert_same_logits(ours, reference, x)
