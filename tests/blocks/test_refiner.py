"""Refiner (arXiv:2106.03714; official code zhoudaquan/Refiner_ViT): the shared-attention
edge, and the refined attention against a naive loop written from the paper's equations
(no pip reference exists, so the equations and the official code's semantics are the
oracle; the official code's counts: tests/families.py)."""

from __future__ import annotations

import math

import pytest
import torch

import vitgraph
from tests.helpers import redraw_
from vitgraph.blocks.refiner import AttentionMapBlock, RefinedAttentionBlock
from vitgraph.shapes import Image, Tokens


def test_shared_layers_take_the_map_of_the_plain_layer_before_them_as_an_edge():
    graph = vitgraph.load("refiner_vit_s", overrides={"depth": 6, "image_size": 32})
    nodes = {node.id: node for node in graph.nodes}
    assert nodes["blocks.0.map"].inputs == ["blocks.0.norm1"]  # the first layer: no carry
    # a shared layer's map is switched off (when: not shared): it passes on the one it
    # receives, so `blocks.1.map` names the plain layer's map
    assert "blocks.1.map" not in nodes and graph.resolve("blocks.1.map") == "blocks.0.map"
    assert nodes["blocks.1.attn"].inputs == ["blocks.1.norm1", "blocks.0.map"]
    assert nodes["blocks.2.map"].inputs == ["blocks.2.norm1", "blocks.0.map"]  # carry
    assert nodes["blocks.3.attn"].inputs == ["blocks.3.norm1", "blocks.2.map"]
    names = {n for n, _ in graph.build(device="meta").named_parameters()}
    # shared layers have no queries or keys; plain layers do not refine
    assert "blocks.1.map.qk.weight" not in names and "blocks.0.map.qk.weight" in names
    assert not any(n.startswith("blocks.0.attn.refiner") for n in names)


def _tokens() -> Tokens:
    return Tokens(dim=8, grid=(2, 2), prefix=1)  # N = 5 tokens, 2 heads of width 4


def _bn(x: torch.Tensor, bn: torch.nn.BatchNorm2d, c: int) -> torch.Tensor:
    return (x - bn.running_mean[c]) / math.sqrt(bn.running_var[c] + bn.eps) * bn.weight[
        c
    ] + bn.bias[c]


def _naive_refine(maps: list[torch.Tensor], refiner) -> list[torch.Tensor]:
    """§3: attention expansion (linear map over heads), distributed local attention
    (depthwise conv of each expanded map, zero padding), projection back, residual."""
    heads, n = len(maps), maps[0].shape[0]
    hidden = refiner.conv_exp.weight.shape[0]
    expanded = []
    for e in range(hidden):
        mixed = sum(refiner.conv_exp.weight[e, h, 0, 0] * maps[h] for h in range(heads))
        expanded.append(_bn(mixed, refiner.bn1, e).clamp(0, 6))
    local = []
    k = refiner.depth_sep_conv.weight.shape[-1]
    for e in range(hidden):
        padded = torch.zeros(n + k - 1, n + k - 1)
        padded[k // 2 : k // 2 + n, k // 2 : k // 2 + n] = expanded[e]
        out = torch.zeros(n, n)
        for i in range(n):
            for j in range(n):
                for a in range(k):
                    for b in range(k):
                        weight = refiner.depth_sep_conv.weight[e, 0, a, b]
                        out[i, j] += weight * padded[i + a, j + b]
        local.append(_bn(out, refiner.bn2, e).clamp(0, 6))
    result = []
    for h in range(heads):
        back = sum(refiner.conv_pro.weight[h, e, 0, 0] * local[e] for e in range(hidden))
        result.append(_bn(_bn(back, refiner.bn3, h) + maps[h], refiner.adapt_bn, h))
    return result


def _softmax_rows(scores: torch.Tensor) -> torch.Tensor:
    exp = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
    return exp / exp.sum(dim=-1, keepdim=True)


@torch.no_grad()
def test_refined_attention_equals_a_naive_loop_of_the_papers_equations():
    block, _ = RefinedAttentionBlock(heads=2, expand=2.0, kernel=3).infer(_tokens())
    module = redraw_(block.build(_tokens())).eval()
    x = torch.randn(2, 5, 8)
    d = 4
    expected = torch.zeros(2, 5, 8)
    for n in range(2):
        qkv = x[n] @ module.qkv.weight.T + module.qkv.bias  # (N, 3 * H * d): q | k | v
        q = [qkv[:, h * d : (h + 1) * d] for h in range(2)]
        k = [qkv[:, 8 + h * d : 8 + (h + 1) * d] for h in range(2)]
        v = [qkv[:, 16 + h * d : 16 + (h + 1) * d] for h in range(2)]
        maps = [_softmax_rows(q[h] @ k[h].T / math.sqrt(d)) for h in range(2)]
        refined = _naive_refine(maps, module.refiner)
        heads_out = torch.cat([refined[h] @ v[h] for h in range(2)], dim=-1)
        expected[n] = heads_out @ module.proj.weight.T + module.proj.bias
    torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_a_shared_layer_refines_the_map_it_receives_and_scales_it_by_the_attention_scale():
    maps_type = Image(2, 5, 5)
    block, _ = RefinedAttentionBlock(heads=2, transform_scale=True).infer(_tokens(), maps_type)
    module = redraw_(block.build(_tokens(), maps_type)).eval()
    assert not hasattr(module, "qkv")  # only values: the map comes from the edge
    x = torch.randn(1, 5, 8)
    attn = torch.rand(1, 2, 5, 5).softmax(-1)
    v = x[0] @ module.v.weight.T + module.v.bias
    refined = _naive_refine([attn[0, 0], attn[0, 1]], module.refiner)
    out = torch.cat([refined[h] / 2.0 @ v[:, 4 * h : 4 * h + 4] for h in range(2)], dim=-1)
    expected = out @ module.proj.weight.T + module.proj.bias
    torch.testing.assert_close(module(x, attn)[0], expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_a_plain_layer_adds_the_earlier_map_times_the_attention_scale_after_its_softmax():
    maps_type = Image(2, 5, 5)
    block, out_type = AttentionMapBlock(heads=2).infer(_tokens(), maps_type)
    assert out_type == Image(2, 5, 5)
    module = redraw_(block.build(_tokens(), maps_type)).eval()
    x, earlier = torch.randn(1, 5, 8), torch.rand(1, 2, 5, 5)
    qk = x[0] @ module.qk.weight.T + module.qk.bias
    for h in range(2):
        own = _softmax_rows(qk[:, 4 * h : 4 * h + 4] @ qk[:, 8 + 4 * h : 12 + 4 * h].T / 2.0)
        torch.testing.assert_close(module(x, earlier)[0, h], own + earlier[0, h] / 2.0)


def test_refined_attention_swaps_into_a_vit_spec_with_one_edit():
    graph = vitgraph.load(
        "vit_ti_16",
        overrides={"depth": 2, "image_size": 32, "blocks.attention": "refined_attention"},
    )
    assert {n.kind for n in graph.nodes if n.id.endswith(".attn")} == {"refined_attention"}
    model = graph.build().eval()
    assert "blocks.0.attn.refiner.conv_exp.weight" in model.state_dict()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


def test_small_refiner_traces_with_fx_and_exports_to_the_same_function():
    model = (
        vitgraph.load("refiner_vit_s", overrides={"depth": 4, "image_size": 32, "dim": 48})
        .build()
        .eval()
    )
    for module in model.modules():
        if type(module).__module__ == "vitgraph.blocks.refiner":
            torch.fx.symbolic_trace(module)
    x = torch.randn(2, 3, 32, 32)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), atol=1e-5)


def test_an_input_that_evaluates_to_null_is_left_out_and_none_left_is_an_error(tmp_path):
    spec = tmp_path / "optional.yaml"
    spec.write_text(
        "vitgraph: 1\nname: optional\ninput: {channels: 3, size: 32}\n"
        "graph:\n"
        "  - {id: embed, kind: patch_embed, patch: 16, dim: 16}\n"
        '  - {id: map, kind: attention_map, heads: 2, inputs: [embed, "${None}"]}\n'
        "  - {id: attn, kind: refined_attention, heads: 2, inputs: [embed, map]}\n"
        "  - {id: pool, kind: mean_pool}\n"
    )
    graph = vitgraph.load(str(spec))
    assert next(n for n in graph.nodes if n.id == "map").inputs == ["embed"]
    spec.write_text(spec.read_text().replace('[embed, "${None}"]', '["${None}"]'))
    with pytest.raises(vitgraph.SpecError) as info:
        vitgraph.load(str(spec))
    assert info.value.problems[0].message == "every input evaluates to null"
