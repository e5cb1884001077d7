"""CeiT (arXiv:2103.11816): the spec's shapes, LeFF and the layer-wise class-token
attention (the official code's counts and the transplant parity: tests/families.py)."""

from __future__ import annotations

import torch

import vitgraph
from tests.helpers import redraw_


def test_ceit_t_shapes_follow_the_paper():
    rows = {r.id: r for r in vitgraph.load("ceit_t").summary().rows}
    assert rows["i2t"].output_shape == (14 * 14, 192)  # 224 -> 112 -> 56 -> 4x4 patches
    assert rows["cls_tokens"].output_shape == (12, 192)  # one class token per layer
    assert rows["pos_layer_embed"].params == 12 * 192
    assert rows["lca.residual2"].output_shape == (1, 192)


def test_leff_passes_the_class_token_through_its_convolutions_unchanged():
    model = vitgraph.build("ceit_t", overrides={"image_size": 32})
    leff = model.get_submodule("blocks.0.leff")
    redraw_(leff).eval()
    x = torch.randn(2, 1 + 2 * 2, 192)
    y = leff(x)
    assert torch.equal(y[:, 0], x[:, 0])
    x2 = x.clone()
    x2[:, 0] += 1.0  # the class token does not reach the patch tokens through LeFF
    assert torch.equal(leff(x2)[:, 1:], y[:, 1:])


def test_lca_queries_with_the_last_class_token_only():
    model = vitgraph.build("ceit_t", overrides={"image_size": 32})
    attn = model.get_submodule("lca.attn")
    redraw_(attn).eval()
    x = torch.randn(2, 12, 192)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert attn(x).shape == (2, 1, 192)
    assert not torch.allclose(attn(x), attn(x2))
