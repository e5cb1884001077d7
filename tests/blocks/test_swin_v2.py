"""Swin v2 (arXiv:2111.09883): each ingredient against timm's module with re-drawn
weights (cosine attention with its clamped temperature, the log-spaced continuous
position bias with a pre-training window, q/v biases, patch merging that normalises last,
res-post-norm's init), the twin's train-mode gradients, and the classes refused by name
(counts, MACs and parity of every timm swinv2_* model: tests/families.py)."""

from __future__ import annotations

import math

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from tests.interop.parity import compare, timm_state_map
from vitgraph import SpecError
from vitgraph.blocks.swin import MergePatches
from vitgraph.blocks.swin_v2 import CosineShiftedWindowAttention, log_spaced_coordinates

timm = pytest.importorskip("timm")
swin_v2 = pytest.importorskip("timm.models.swin_transformer_v2")


def test_cosine_window_attention_equals_timms_with_a_clamped_scale_and_pretrained_window():
    # one 4x4 window (grid = window, no shift): timm's module sees the same tokens as ours
    reference = swin_v2.WindowAttention(16, (4, 4), 2, pretrained_window_size=(6, 6))
    redraw_(reference)
    with torch.no_grad():  # head 0 above the clamp at log(100): its temperature is 100
        reference.logit_scale.copy_(torch.tensor([6.0, 0.5]).view(2, 1, 1))
    ours = CosineShiftedWindowAttention(16, (4, 4), 2, 8, (4, 4), (0, 0), (6, 6), True, 0.0, 0.0)
    missing = ours.load_state_dict(reference.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert_same_logits(ours, reference, x)
    with torch.no_grad():  # the clamp acts: unclamped, head 0 would differ
        reference.logit_scale.fill_(math.log(100.0))
        clamped = reference(x)
        reference.logit_scale[0] = 6.0
        torch.testing.assert_close(reference(x), clamped)


def test_log_spaced_coordinates_are_timms_table():
    # timm's pretrained window 0: scaled by the window itself
    for window, pretrained, theirs in [
        ((8, 8), (8, 8), 0),
        ((16, 16), (12, 12), 12),
        ((1, 1), (1, 1), 0),
    ]:
        reference = swin_v2.WindowAttention(8, window, 1, pretrained_window_size=theirs)
        table = reference.relative_coords_table.reshape(-1, 2)
        torch.testing.assert_close(log_spaced_coordinates(window, pretrained), table)


def test_v2_patch_merging_projects_then_normalises_as_timms():
    reference = redraw_(swin_v2.PatchMerging(8))
    ours = MergePatches(8, 16, (6, 6), 1e-5, norm_last=True)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 6, 6, 8)
    torch.testing.assert_close(ours(x.flatten(1, 2)), reference(x).flatten(1, 2))


def test_res_post_norms_start_at_zero_and_are_kept_out_of_weight_decay_as_in_timm():
    small = {"image_size": 64, "window": 4, "depths": [1, 2, 1, 1]}
    model = vitgraph.build("swinv2_t_w8", overrides=small)
    norms = {n: p for n, p in model.named_parameters() if ".blocks." in n and ".norm" in n}
    assert len(norms) == 5 * 4 and all((p == 0).all() for p in norms.values())
    reference = timm.create_model(
        "swinv2_tiny_window8_256", img_size=64, window_size=4, depths=(1, 2, 1, 1)
    )
    exempt = {n for n in model.no_weight_decay() if "cpb_mlp" in n or "logit_scale" in n}
    assert exempt == set(reference.no_weight_decay())


def test_from_timm_swinv2_gives_equal_logits_and_gradients_in_training():
    reference = timm.create_model(
        "swinv2_base_window12to16_192to256",
        img_size=128,
        embed_dim=16,
        depths=(1, 2, 2, 1),
        num_heads=(1, 2, 2, 4),
        drop_path_rate=0.1,
        num_classes=10,
    )
    reference = redraw_(reference)
    ours = vitgraph.from_timm(reference)
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    assert compare(ours, reference, timm_state_map(reference), x) == []


@pytest.mark.slow
def test_a_dynamic_swinv2_equals_timms_at_sizes_its_windows_do_not_divide_in_training_too():
    # built at 128 (grids 32 .. 4, window 16), run at 160x96: grids 40x24 .. 5x3, padded
    reference = timm.create_model(
        "swinv2_base_window12to16_192to256",
        img_size=128,
        embed_dim=16,
        depths=(1, 2, 2, 1),
        num_heads=(1, 2, 2, 4),
        drop_path_rate=0.1,
        num_classes=10,
        strict_img_size=False,
    )
    reference = redraw_(reference)
    ours = vitgraph.from_timm(reference)
    assert ours.pretrained_cfg["fixed_input_size"] is False
    x = torch.randn(2, 3, 160, 96, generator=torch.Generator().manual_seed(2))
    assert compare(ours, reference, timm_state_map(reference), x) == []


def test_from_timm_refuses_swinv2_cr_by_its_class():
    model = timm.create_model("swinv2_cr_tiny_ns_224", img_size=64, window_size=4)
    with pytest.raises(SpecError, match="SwinTransformerV2Cr"):
        vitgraph.from_timm(model)
