"""Swin (arXiv:2103.14030): ``from_timm`` on an odd grid and a refused option, the
shifted windows' mask, feature taps and per-stage summary rows (counts, the MACs and
parity against every timm ``swin_*`` model: tests/families.py)."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph import SpecError

timm = pytest.importorskip("timm")


def test_from_timm_covers_an_odd_grid_and_a_clamped_window():
    # 112 px: grids 28, 14, 7, 4 (7 is zero-padded to merge; 4 < window 7 is one window)
    reference = redraw_(
        timm.create_model(
            "swin_tiny_patch4_window7_224",
            pretrained=False,
            depths=(2, 2, 2, 2),
            embed_dim=32,
            num_heads=(1, 2, 4, 8),
            img_size=112,
        ).eval()
    )
    assert_same_logits(vitgraph.from_timm(reference), reference, torch.randn(2, 3, 112, 112))


def test_from_timm_refuses_always_partition():
    model = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        depths=(1, 1, 1, 1),
        embed_dim=16,
        num_heads=(1, 1, 1, 1),
        always_partition=True,
    )
    with pytest.raises(SpecError, match="always_partition"):
        vitgraph.from_timm(model)


def test_swin_feature_taps_report_each_stage_and_build_a_backbone():
    graph = vitgraph.load(
        "swin_t", overrides={"image_size": 64, "window": 4, "depths": [1, 2, 1, 1]}
    )
    assert graph.feature_shapes() == {
        "layers.0": (256, 96),
        "layers.1": (64, 192),
        "layers.2": (16, 384),
        "layers.3": (4, 768),
    }
    backbone = graph.build(features=True)
    assert "head.weight" not in backbone.state_dict()
    maps = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 256, 96), (1, 64, 192), (1, 16, 384), (1, 4, 768)]


def test_swin_summary_has_one_row_per_stage():
    rows = {r.id: r for r in vitgraph.load("swin_t").summary().grouped()}
    assert [k for k in rows if k.startswith("layers")] == [f"layers.{i}" for i in range(4)]
    assert rows["layers.2"].output_shape == (196, 384)
    assert rows["layers.2"].params == 10_955_400


def test_shifted_windows_mask_pairs_from_opposite_borders():
    from vitgraph.blocks.swin import shifted_window_mask

    mask = shifted_window_mask((8, 8), (4, 4), (2, 2))
    assert mask.shape == (4, 1, 16, 16)
    assert (mask[0] == 0).all()  # the top-left window holds one region only
    assert (mask[3] == -100).any() and (mask[3].diagonal(dim1=-2, dim2=-1) == 0).all()
