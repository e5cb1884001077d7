"""BoTNet (arXiv:2101.11605): timm's botnet26t_256 / botnet50ts_256 counted exactly and
equal to timm after ``from_timm``; the 2-D relative logits checked against a direct sum."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_

timm = pytest.importorskip("timm")
from vitgraph.interop.timm import from_timm  # noqa: E402

TIMM_PARAMS = {"botnet26t_256": 12_488_672, "botnet50ts_256": 22_742_688}
# BoT50 (ResNet-50 with BoT blocks in c5): the paper reports 20.8M against R50's 25.5M
PAPER_PARAMS = {"bot50": 20.8e6}


@pytest.mark.parametrize("variant", sorted(TIMM_PARAMS))
def test_botnet_param_count_equals_timm_to_the_unit(variant):
    assert vitgraph.load(variant).summary().params == TIMM_PARAMS[variant]


def test_bot50_count_is_within_half_a_percent_of_the_paper():
    params = vitgraph.load("bot50").summary().params
    assert abs(params - PAPER_PARAMS["bot50"]) / PAPER_PARAMS["bot50"] < 0.005


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_timm_botnet_at_128_pixels_gives_the_same_logits_after_from_timm(name):
    reference = redraw_(timm.create_model(name, pretrained=False, img_size=128))
    ours = from_timm(reference)
    assert_same_logits(ours, reference, torch.randn(2, 3, 128, 128))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_full_size_timm_botnet_gives_the_same_logits_after_from_timm(name):
    reference = redraw_(timm.create_model(name, pretrained=False))
    ours = from_timm(reference)
    assert_same_logits(ours, reference, torch.randn(2, 3, 256, 256))


def test_from_timm_refuses_a_byobnet_that_is_not_a_botnet():
    reference = timm.create_model("sebotnet33ts_256", pretrained=False)
    with pytest.raises(vitgraph.SpecError, match="sebotnet33ts_256"):
        from_timm(reference)


@pytest.mark.parametrize("variant", ["bot50", *sorted(TIMM_PARAMS)])
def test_botnet_variant_runs_forward_and_backward_at_64_pixels(variant):
    model = vitgraph.build(variant, overrides={"image_size": 64, "classes": 10})
    logits = model(torch.randn(2, 3, 64, 64))
    logits.sum().backward()
    assert logits.shape == (2, 10)
    assert all(p.grad is not None for p in model.parameters())


def test_relative_logits_equal_q_dot_r_h_plus_q_dot_r_w():
    from vitgraph.blocks.bottleneck import RelPosSelfAttention

    attn = RelPosSelfAttention(8, 2, (3, 4), 1, False)
    d, rows, cols = 4, 3, 4
    q = torch.randn(1, 2, rows * cols, d)
    rel = attn.relative_logits(q)
    for qi in range(rows * cols):
        y, x = divmod(qi, cols)
        for ki in range(rows * cols):
            y2, x2 = divmod(ki, cols)
            expected = (q[0, 1, qi] @ attn.pos_embed.height_rel[y2 - y + rows - 1]
                        + q[0, 1, qi] @ attn.pos_embed.width_rel[x2 - x + cols - 1])
            assert torch.allclose(rel[0, 1, qi, ki], expected, atol=1e-5)


def test_bot_block_pools_after_attention_when_it_strides():
    rows = {r.id: r for r in vitgraph.load("bot50").summary().rows}
    assert rows["stage3.0"].output_shape == (2048, 7, 7)  # attention at 14x14, then pool
    model = vitgraph.build("bot50", device="meta")
    keys = model.state_dict()
    assert keys["stage3.0.self_attn.pos_embed.height_rel"].shape == (2 * 14 - 1, 128)
    assert keys["stage3.1.self_attn.pos_embed.height_rel"].shape == (2 * 7 - 1, 128)
