"""BoTNet (arXiv:2101.11605): timm's botnet26t_256 / botnet50ts_256 counted exactly and
equal to timm after ``from_timm``; the 2-D relative logits checked against a direct sum;
BoTNet-S1-59/110 (SE, stride-1 c5) against the paper's params and MACs."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_

timm = pytest.importorskip("timm")
from vitgraph.interop.timm import from_timm  # noqa: E402

TIMM_PARAMS = {"botnet26t_256": 12_488_672, "botnet50ts_256": 22_742_688}
# BoT50 (ResNet-50 with BoT blocks in c5): the paper reports 20.8M against R50's 25.5M;
# BoTNet-S1-59 / S1-110 (its T3 / T4, at 224): 33.5M / 7.3B MACs and 54.7M / 10.9B
PAPER_PARAMS = {"bot50": 20.8e6, "botnet_s1_59": 33.5e6, "botnet_s1_110": 54.7e6}
PAPER_MACS = {"botnet_s1_59": 7.3e9, "botnet_s1_110": 10.9e9}
# what the spec computes (see the note in specs/botnet.yaml)
S1_PARAMS = {"botnet_s1_59": 33_659_480, "botnet_s1_110": 54_898_328}


@pytest.mark.parametrize("variant", sorted(TIMM_PARAMS))
def test_botnet_param_count_equals_timm_to_the_unit(variant):
    assert vitgraph.load(variant).summary().params == TIMM_PARAMS[variant]


@pytest.mark.parametrize("variant", sorted(PAPER_PARAMS))
def test_paper_botnet_count_is_within_half_a_percent_of_the_paper(variant):
    params = vitgraph.load(variant).summary().params
    assert abs(params - PAPER_PARAMS[variant]) / PAPER_PARAMS[variant] < 0.005


@pytest.mark.parametrize("variant", sorted(S1_PARAMS))
def test_botnet_s1_counts_what_the_spec_documents_and_the_papers_macs(variant):
    summary = vitgraph.load(variant).summary()
    assert summary.params == S1_PARAMS[variant]
    assert abs(summary.macs - PAPER_MACS[variant]) / PAPER_MACS[variant] < 0.01


def test_botnet_s1_keeps_c5_at_stride_1_with_six_se_bot_blocks():
    rows = {r.id: r for r in vitgraph.load("botnet_s1_59").summary().rows}
    assert rows["stage2.5"].output_shape == (1024, 14, 14)
    assert [rows[f"stage3.{i}"].output_shape for i in range(6)] == [(2048, 14, 14)] * 6
    assert "stage3.6" not in rows and "stage2.6" not in rows
    keys = vitgraph.build("botnet_s1_110", device="meta").state_dict()
    assert "stage2.22.attn_last.fc1.weight" in keys
    assert "stage2.23.conv1_1x1.conv.weight" not in keys
    assert keys["stage3.0.self_attn.pos_embed.height_rel"].shape == (2 * 14 - 1, 128)
    assert keys["stage3.5.attn_last.fc1.weight"].shape == (128, 2048, 1, 1)  # 2048 / 16
    assert keys["stage0.0.attn_last.fc2.bias"].shape == (256,)


def test_botnet_s1_without_se_loses_the_4_million_gate_parameters():
    with_se = vitgraph.load("botnet_s1_59").summary().params
    without = vitgraph.load("botnet_s1_59", overrides={"se": 0}).summary().params
    assert without == 29_549_096
    assert with_se - without == 4_110_384


def test_squeeze_excite_rescales_each_channel_by_its_gate():
    from vitgraph.blocks.squeeze_excite import SqueezeExcite

    se = SqueezeExcite(8, 2, "relu")
    x = torch.randn(2, 8, 5, 5)
    gate = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.mean((2, 3), keepdim=True)))))
    assert torch.equal(se(x), x * gate)
    assert gate.shape == (2, 8, 1, 1)


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
    diff = assert_same_logits(ours, reference, torch.randn(2, 3, 256, 256))
    print(f"{name}: max |logit diff| {diff:.2e}")  # quoted in reports (pytest -s)


def test_from_timm_refuses_a_byobnet_that_is_not_a_botnet():
    reference = timm.create_model("sebotnet33ts_256", pretrained=False)
    with pytest.raises(vitgraph.SpecError, match="sebotnet33ts_256"):
        from_timm(reference)


@pytest.mark.parametrize("variant", ["bot50", *sorted(TIMM_PARAMS), *sorted(S1_PARAMS)])
def test_botnet_variant_runs_forward_and_backward_at_64_pixels(variant):
    # the S1 variants at reduced depth (every block structure kept: SE conv blocks, a
    # projecting stride-1 SE BoT block, a plain one); their full depth is counted above
    fewer = {"layout": [[0], [0], [0, 0], [1, 1]]} if variant in S1_PARAMS else {}
    model = vitgraph.build(variant, overrides={"image_size": 64, "classes": 10, **fewer})
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
            expected = (
                q[0, 1, qi] @ attn.pos_embed.height_rel[y2 - y + rows - 1]
                + q[0, 1, qi] @ attn.pos_embed.width_rel[x2 - x + cols - 1]
            )
            assert torch.allclose(rel[0, 1, qi, ki], expected, atol=1e-5)


def test_bot_block_pools_after_attention_when_it_strides():
    rows = {r.id: r for r in vitgraph.load("bot50").summary().rows}
    assert rows["stage3.0"].output_shape == (2048, 7, 7)  # attention at 14x14, then pool
    model = vitgraph.build("bot50", device="meta")
    keys = model.state_dict()
    assert keys["stage3.0.self_attn.pos_embed.height_rel"].shape == (2 * 14 - 1, 128)
    assert keys["stage3.1.self_attn.pos_embed.height_rel"].shape == (2 * 7 - 1, 128)


def test_squeeze_excite_kind_gates_a_feature_map_inside_a_spec(tmp_path):
    spec = tmp_path / "tiny_se.yaml"
    spec.write_text("""vitgraph: 1
name: tiny_se
input: {channels: 3, size: 32}
graph:
  - {id: stem, kind: bot_stem, channels: [32]}
  - {id: se, kind: squeeze_excite, ratio: 0.25}
  - {id: pool, kind: global_avg_pool}
  - {id: head, kind: linear_head, classes: 10}
""")
    rows = {r.id: r for r in vitgraph.load(str(spec)).summary().rows}
    assert rows["se"].output_shape == (32, 8, 8)
    assert rows["se"].params == 32 * 8 + 8 + 8 * 32 + 32  # fc1, fc2 with biases
