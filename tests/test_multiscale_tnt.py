"""TNT (arXiv:2103.00112): exact counts against timm's definition, forward and backward of
both variants at a small size, from_timm parity on a reduced copy of every tnt_* timm
registers (including the legacy pixel embedding and block projection)."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_

timm = pytest.importorskip("timm")

# timm tnt_s_patch16_224 / tnt_b_patch16_224, counted on the meta device
TIMM_COUNTS = {"tnt_s": 23_768_584, "tnt_b": 65_428_680}
SMALL = {"image_size": 32, "depth": 2}


def test_tnt_s_has_exactly_timms_parameter_count():
    assert vitgraph.load("tnt_s").summary().params == 23_768_584


@pytest.mark.parametrize("variant", sorted(TIMM_COUNTS))
def test_every_tnt_variant_counts_exactly_like_timm(variant):
    assert vitgraph.load(variant).summary().params == TIMM_COUNTS[variant]


def test_tnt_s_macs_are_within_five_percent_of_the_paper():
    assert abs(vitgraph.load("tnt_s").summary().macs / 1e9 - 5.2) / 5.2 < 0.05


@pytest.mark.parametrize("variant", sorted(TIMM_COUNTS))
def test_every_tnt_variant_runs_forward_and_backward_at_a_small_size(variant):
    model = vitgraph.build(variant, overrides=SMALL)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1000)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", timm.list_models("tnt*"))
def test_from_timm_gives_timm_logits_on_a_reduced_copy(name):
    reference = redraw_(
        timm.create_model(name, pretrained=False, depth=2, img_size=64, drop_path_rate=0.1).eval()
    )
    ours = vitgraph.from_timm(reference)
    assert_same_logits(ours, reference, torch.randn(2, 3, 64, 64))
    assert len(ours.state_dict()) == len(reference.state_dict())


def test_tnt_words_are_a_second_token_stream_of_sixteen_per_patch():
    graph = vitgraph.load("tnt_s")
    assert graph.type_of("pixel_embed").shape == (196 * 16, 24)
    assert graph.type_of("blocks.11.words").shape == (196 * 16, 24)
    assert graph.type_of("blocks").shape == (197, 384)


@pytest.mark.slow
@pytest.mark.parametrize("name", timm.list_models("tnt*"))
def test_from_timm_gives_timm_logits_at_full_size(name):
    reference = redraw_(timm.create_model(name, pretrained=False).eval())
    ours = vitgraph.from_timm(reference)
    assert_same_logits(ours, reference, torch.randn(1, 3, 224, 224))
