"""Swin (arXiv:2103.14030): exact counts against timm on the meta device, forward and
backward of every variant at a small size, from_timm parity on a reduced copy of every
swin_* structure timm registers, feature taps and per-stage summary rows."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph import SpecError

timm = pytest.importorskip("timm")

# timm swin_{tiny,small,base,large}_patch4_window7_224, counted on the meta device
TIMM_COUNTS = {
    "swin_t": 28_288_354,
    "swin_s": 49_606_258,
    "swin_b": 87_768_224,
    "swin_l": 196_532_476,
}
SMALL = {"image_size": 64, "window": 4, "depths": [1, 2, 1, 1]}


def test_swin_t_has_exactly_timms_parameter_count():
    assert vitgraph.load("swin_t").summary().params == 28_288_354


@pytest.mark.parametrize("variant", sorted(TIMM_COUNTS))
def test_every_swin_variant_counts_within_half_a_percent_of_timm(variant):
    params = vitgraph.load(variant).summary().params
    assert abs(params - TIMM_COUNTS[variant]) / TIMM_COUNTS[variant] < 0.005
    assert params == TIMM_COUNTS[variant]  # in fact exact


def test_swin_t_macs_equal_the_same_counter_run_on_timm():
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        reference = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
    counter = FlopCounterMode(display=False)
    with counter:
        reference(torch.empty(1, 3, 224, 224, device="meta"))
    assert vitgraph.load("swin_t").summary().macs == counter.get_total_flops() // 2


@pytest.mark.parametrize("variant", sorted(TIMM_COUNTS))
def test_every_swin_variant_runs_forward_and_backward_at_a_small_size(variant):
    model = vitgraph.build(variant, overrides=SMALL)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1000)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def _reduced(name: str) -> dict:
    """A small copy of a timm swin_*: its windows, patch and image size, fewer blocks and
    narrower stages, stage 2 deep enough to hold a shifted block; half the image side
    where the windows still divide the grids (Swin-S3 keeps 224 for its 14x14 windows)."""
    small = {"depths": (1, 2, 2, 1), "embed_dim": 32, "num_heads": (1, 2, 4, 8)}
    if "window" in name:
        small["img_size"] = 192 if "384" in name else 112
    return small


@pytest.mark.parametrize("name", timm.list_models("swin_*"))
def test_from_timm_gives_timm_logits_on_a_reduced_copy(name):
    reference = redraw_(timm.create_model(name, pretrained=False, **_reduced(name)).eval())
    ours = vitgraph.from_timm(reference)
    x = torch.randn(1, 3, *reference.patch_embed.img_size)
    assert_same_logits(ours, reference, x)
    theirs = {k.replace("head.fc.", "head.") for k in reference.state_dict()}
    assert set(ours.state_dict()) == theirs


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
    graph = vitgraph.load("swin_t", overrides=SMALL)
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


@pytest.mark.slow
@pytest.mark.parametrize("name", timm.list_models("swin_*"))
def test_from_timm_gives_timm_logits_at_full_size(name):
    reference = redraw_(timm.create_model(name, pretrained=False).eval())
    ours = vitgraph.from_timm(reference)
    assert_same_logits(ours, reference, torch.randn(1, 3, *reference.patch_embed.img_size))
