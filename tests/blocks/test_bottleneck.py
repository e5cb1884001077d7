"""BoTNet (arXiv:2101.11605): the 2-D relative logits checked against a direct sum, the
BoT block's pooling, squeeze-excite, BoTNet-S1-59/110's layout (SE, stride-1 c5), and a
refused ByobNet that is not a BoTNet. Counts, the paper's numbers and parity with timm:
tests/families.py."""

from __future__ import annotations

import pytest
import torch

import vitgraph

timm = pytest.importorskip("timm")
from vitgraph.interop.timm import from_timm  # noqa: E402


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


def test_from_timm_refuses_a_byobnet_that_is_not_a_botnet():
    reference = timm.create_model("sebotnet33ts_256", pretrained=False)
    with pytest.raises(vitgraph.SpecError, match="sebotnet33ts_256"):
        from_timm(reference)


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
