"""Swin (arXiv:2103.14030): ``from_timm`` on an odd grid and a refused option, the
shifted windows' mask, feature taps and per-stage summary rows (counts, the MACs and
parity against every timm ``swin_*`` model: tests/families.py)."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from tests.interop.parity import compare, timm_state_map
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


def _dynamic_swin(**kwargs):
    """A small timm Swin taking any input size (strict_img_size=False), weights re-drawn."""
    return redraw_(
        timm.create_model(
            "swin_tiny_patch4_window7_224",
            pretrained=False,
            depths=(2, 2, 2, 2),
            embed_dim=16,
            num_heads=(1, 2, 2, 4),
            num_classes=10,
            **kwargs,
        ).eval()
    )


# 256x192: grids 64x48 .. 8x6, no stage grid a multiple of the window 7 (padded, the
# shifted windows' mask of the padded map); 320: 80 .. 10; 100x60: odd grids merged
@pytest.mark.slow
@pytest.mark.parametrize("size", [(224, 224), (256, 192), (320, 320), (100, 60)])
def test_from_timm_of_a_dynamic_swin_equals_it_at_other_sizes(size):
    reference = _dynamic_swin(strict_img_size=False)
    ours = vitgraph.from_timm(reference)
    assert ours.pretrained_cfg["fixed_input_size"] is False
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    assert_same_logits(ours, reference, x)


@pytest.mark.slow
def test_a_dynamic_swin_trains_as_timms_at_a_padded_size():
    reference = _dynamic_swin(dynamic_img_size=True, drop_path_rate=0.1)
    ours = vitgraph.from_timm(reference)
    x = torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(0))
    assert compare(ours, reference, timm_state_map(reference), x) == []


def test_set_input_size_keeps_a_dynamic_swin_dynamic_and_equal_to_timms():
    reference = _dynamic_swin(strict_img_size=False)
    ours = vitgraph.from_timm(reference)
    reference.set_input_size(img_size=(256, 256), window_size=8)
    ours.set_input_size(img_size=(256, 256), window_size=8)
    assert ours.pretrained_cfg["fixed_input_size"] is False
    assert_same_logits(ours, reference, torch.randn(1, 3, 320, 224))


def test_a_dynamic_swin_refuses_a_side_its_patch_does_not_divide_in_one_line():
    ours = vitgraph.from_timm(_dynamic_swin(strict_img_size=False))
    with pytest.raises(ValueError, match="an input of 226x224 gives 3136 tokens"):
        ours(torch.randn(1, 3, 226, 224))


def test_fx_feature_extraction_of_a_dynamic_swin_traces_and_runs_at_another_size():
    extraction = pytest.importorskip("torchvision.models.feature_extraction")
    reference = _dynamic_swin(strict_img_size=False)
    ours = vitgraph.from_timm(reference).eval()
    _, nodes = extraction.get_graph_node_names(ours)
    traced = extraction.create_feature_extractor(ours, return_nodes=[nodes[-1]])
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(next(iter(traced(x).values())), ours(x))
    assert_same_logits(ours, reference, x)


def test_a_dynamic_window_attention_names_the_stride_its_grid_does_not_match(tmp_path):
    spec = tmp_path / "bad_stride.yaml"
    spec.write_text(
        "vitgraph: 1\nname: bad_stride\ninput: {channels: 3, size: 32}\ngraph:\n"
        "  - {id: embed, kind: patch_embed, patch: 4, dim: 8}\n"
        "  - {id: attn, kind: shifted_window_attention, heads: 1, window: 4, dynamic: true,\n"
        "     stride: 8, inputs: [embed, input]}\n"
    )
    with pytest.raises(SpecError, match="8x8 grid is not the 32x32 image's at stride 8"):
        vitgraph.load(spec)


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
