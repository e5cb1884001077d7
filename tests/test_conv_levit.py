"""LeViT (arXiv:2104.01136): counts against timm, logits against every timm ``levit_*``
model (linear and conv modes) after a weight transplant, and the distillation heads."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_

timm = pytest.importorskip("timm")
from vitgraph.interop.timm import from_timm  # noqa: E402

# timm's counts (pretrained=False, distillation head included) and the paper's MACs (Table 3)
TIMM_PARAMS = {
    "levit_128s": 7_777_058,
    "levit_128": 9_213_936,
    "levit_192": 10_947_069,
    "levit_256": 18_893_876,
    "levit_384": 39_128_836,
}
PAPER_MMACS = {
    "levit_128s": 305,
    "levit_128": 406,
    "levit_192": 658,
    "levit_256": 1120,
    "levit_384": 2353,
}
TIMM_LEVITS = timm.list_models("levit*")


@pytest.mark.parametrize("variant", sorted(TIMM_PARAMS))
def test_levit_param_count_equals_timm_to_the_unit(variant):
    assert vitgraph.load(variant).summary().params == TIMM_PARAMS[variant]


@pytest.mark.parametrize("variant", sorted(PAPER_MMACS))
def test_levit_macs_are_within_one_percent_of_the_paper(variant):
    macs = vitgraph.load(variant).summary().macs / 1e6
    assert abs(macs - PAPER_MMACS[variant]) / PAPER_MMACS[variant] < 0.01


def test_every_levit_in_timm_is_covered_in_both_modes():
    linear = {n for n in TIMM_LEVITS if "_conv" not in n}
    conv = {n.replace("levit_conv_", "levit_") for n in TIMM_LEVITS if "_conv" in n}
    assert linear == conv and len(linear) == 10


@pytest.mark.parametrize("name", TIMM_LEVITS)
def test_reduced_timm_levit_gives_the_same_logits_after_from_timm(name):
    reference = redraw_(timm.create_model(name, pretrained=False, depth=(1, 1, 1), img_size=64))
    ours = from_timm(reference)
    assert_same_logits(ours, reference, torch.randn(2, 3, 64, 64))


@pytest.mark.slow
@pytest.mark.parametrize("name", TIMM_LEVITS)
def test_full_size_timm_levit_gives_the_same_logits_after_from_timm(name):
    reference = redraw_(timm.create_model(name, pretrained=False))
    ours = from_timm(reference)
    diff = assert_same_logits(ours, reference, torch.randn(2, 3, 224, 224))
    print(f"{name}: max |logit diff| {diff:.2e}")  # quoted in reports (pytest -s)


@pytest.mark.parametrize("variant", sorted(TIMM_PARAMS))
def test_levit_variant_runs_forward_and_backward_at_64_pixels(variant):
    model = vitgraph.build(
        variant, overrides={"image_size": 64, "depths": [1, 1, 1], "classes": 10}
    )
    cls, dist = model(torch.randn(2, 3, 64, 64))
    (cls.sum() + dist.sum()).backward()
    assert cls.shape == dist.shape == (2, 10)
    assert all(p.grad is not None for p in model.parameters())


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
