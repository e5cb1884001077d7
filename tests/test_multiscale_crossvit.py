"""CrossViT (arXiv:2103.14899): exact counts against timm for every variant (input 240),
forward and backward of every variant at a small size, from_timm parity on a reduced
copy of every crossvit_* timm registers (plain and † stems, 240 and 408 inputs), the
two-branch summary rows and feature taps."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_

timm = pytest.importorskip("timm")

# the timm model of each variant, and its parameter count (meta device)
TIMM = {
    "crossvit_ti": ("crossvit_tiny_240", 7_014_800),
    "crossvit_s": ("crossvit_small_240", 26_856_272),
    "crossvit_b": ("crossvit_base_240", 105_025_232),
    "crossvit_9": ("crossvit_9_240", 8_553_296),
    "crossvit_15": ("crossvit_15_240", 27_528_464),
    "crossvit_18": ("crossvit_18_240", 43_271_408),
    "crossvit_9_dagger": ("crossvit_9_dagger_240", 8_776_592),
    "crossvit_15_dagger": ("crossvit_15_dagger_240", 28_209_008),
    "crossvit_18_dagger": ("crossvit_18_dagger_240", 44_266_976),
}
SMALL = {"image_size": 48, "large_size": 48, "encoders": 2, "depth_large": 1}


def test_crossvit_9_has_exactly_timms_parameter_count_at_240():
    graph = vitgraph.load("crossvit_9")
    assert graph.input_shape == (3, 240, 240)
    assert graph.summary().params == 8_553_296


@pytest.mark.parametrize("variant", sorted(TIMM))
def test_every_crossvit_variant_counts_exactly_like_timm(variant):
    assert vitgraph.load(variant).summary().params == TIMM[variant][1]


def test_crossvit_9_macs_are_within_five_percent_of_the_paper():
    assert abs(vitgraph.load("crossvit_9").summary().macs / 1e9 - 1.8) / 1.8 < 0.05


@pytest.mark.parametrize("variant", sorted(TIMM))
def test_every_crossvit_variant_runs_forward_and_backward_at_a_small_size(variant):
    model = vitgraph.build(variant, overrides=SMALL)
    out = model(torch.randn(2, 3, 48, 48))
    assert out.shape == (2, 1000)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def _reduced(name: str) -> torch.nn.Module:
    """Two multi-scale encoders of one layer per branch, the rest as timm registers it."""
    small = {"depth": [[1, 1, 0]] * 2, "drop_path_rate": 0.1}
    if name == "crossvit_18_240":  # its entry point cannot take `depth` (timm 1.0.31)
        from timm.models.crossvit import CrossVit

        return CrossVit(
            img_size=240,
            img_scale=(1.0, 224 / 240),
            patch_size=[12, 16],
            embed_dim=[224, 448],
            num_heads=[7, 7],
            mlp_ratio=[3, 3, 1],
            **small,
        )
    return timm.create_model(name, pretrained=False, **small)


@pytest.mark.parametrize("name", timm.list_models("crossvit*"))
def test_from_timm_gives_timm_logits_on_a_reduced_copy(name):
    reference = redraw_(_reduced(name).eval())
    ours = vitgraph.from_timm(reference)
    assert_same_logits(ours, reference, torch.randn(1, 3, *reference.img_size))
    assert len(ours.state_dict()) == len(reference.state_dict())


def test_crossvit_summary_has_rows_for_each_branch():
    rows = [r.id for r in vitgraph.load("crossvit_9").summary().grouped()]
    assert rows[:7] == [
        "patch_embed_small",
        "cls_token_small",
        "pos_embed_small",
        "resize",
        "patch_embed_large",
        "cls_token_large",
        "pos_embed_large",
    ]
    assert rows[-7:] == [
        "norm_small",
        "pool_small",
        "head_small",
        "norm_large",
        "pool_large",
        "head_large",
        "head",
    ]


def test_crossvit_feature_taps_are_both_branches():
    assert vitgraph.load("crossvit_9").feature_shapes() == {
        "norm_small": (401, 128),
        "norm_large": (197, 256),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", timm.list_models("crossvit*"))
def test_from_timm_gives_timm_logits_at_full_size(name):
    reference = redraw_(timm.create_model(name, pretrained=False).eval())
    ours = vitgraph.from_timm(reference)
    assert_same_logits(ours, reference, torch.randn(1, 3, *reference.img_size))


def test_crossvit_summary_shows_both_streams_leaving_the_encoders():
    from vitgraph.render import _branch_outputs

    graph = vitgraph.load("crossvit_9")
    assert _branch_outputs(graph) == {"blocks": [("large", (197, 256)), ("small", (401, 128))]}
    grouped = {r.id: r for r in graph.summary().grouped()}
    assert grouped["blocks"].kind == "crossvit_block" and grouped["blocks"].count == 3
