"""DeepViT (arXiv:2103.11886): the re-attention kind, where deepvit_s uses it, and
swapping it into ViT with one override (the official models' counts: tests/families.py)."""

from __future__ import annotations

import pytest
import torch

import vitgraph


def test_deepvit_s_has_reattention_only_in_its_last_five_layers():
    graph = vitgraph.load("deepvit_s")
    kinds = [graph.node(f"blocks.{i}.attn").kind for i in range(16)]
    assert kinds == ["mhsa"] * 11 + ["reattention"] * 5
    assert graph.node("blocks.15.attn").params.transform_scale is True
    assert graph.node("blocks.0.norm1").params.eps == pytest.approx(4e-6)  # 1e-6 / 0.5²


def test_reattention_swaps_into_vit_with_one_override():
    plain = vitgraph.load("vit_ti_16")
    swapped = vitgraph.load("vit_ti_16", overrides={"blocks.attention": "reattention"})
    assert {n.kind for n in swapped.nodes if n.id.endswith(".attn")} == {"reattention"}
    heads = 3
    extra = 12 * (heads * heads + heads + 2 * heads)  # Θ with bias, BatchNorm's scale and shift
    assert swapped.summary().params == plain.summary().params + extra
    model = vitgraph.load(
        "vit_ti_16", overrides={"blocks.attention": "reattention", "depth": 2, "image_size": 32}
    ).build()
    model.eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


def test_reattention_mixes_heads_after_the_softmax():
    from vitgraph.blocks.reattention import ReAttention

    torch.manual_seed(0)
    layer = ReAttention(8, 2, 4, True, True, 0.0, 0.0, False).eval()
    with torch.no_grad():
        layer.reatten_matrix.weight.copy_(torch.eye(2)[:, :, None, None])
        layer.reatten_matrix.bias.zero_()
    x = torch.randn(1, 5, 8)
    qkv = layer.qkv(x).unflatten(-1, (3, 2, 4)).permute(2, 0, 3, 1, 4)
    plain = torch.nn.functional.scaled_dot_product_attention(*qkv.unbind(0))
    expected = layer.proj(plain.transpose(1, 2).flatten(2))
    # identity Θ and a fresh BatchNorm (mean 0, var 1, eps 1e-5) leave the maps ~unchanged
    assert torch.allclose(layer(x), expected, atol=1e-4)
