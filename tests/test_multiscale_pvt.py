"""PVT v1 (arXiv:2102.12122): exact counts against HuggingFace's PvtForImageClassification,
logits equal to it after a weight transplant (pvt_tiny at full size, and a reduced copy
with every stage structure), forward and backward of every variant, feature taps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vitgraph
from tests.helpers import assert_same_logits, redraw_

transformers = pytest.importorskip("transformers")
from vitgraph.interop.hf_pvt import from_transformers_pvt  # noqa: E402

# HF PvtForImageClassification(PvtConfig(depths=...)), counted on the meta device
HF_COUNTS = {
    "pvt_tiny": 13_229_288,
    "pvt_small": 24_485_864,
    "pvt_medium": 44_208_104,
    "pvt_large": 61_369_320,
}
SMALL = {"image_size": 64, "depths": [1, 1, 1, 1]}


class _Logits(nn.Module):
    """HF returns an output object; the parity helper compares tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def test_pvt_tiny_has_exactly_the_hf_parameter_count():
    assert vitgraph.load("pvt_tiny").summary().params == 13_229_288


@pytest.mark.parametrize("variant", sorted(HF_COUNTS))
def test_every_pvt_variant_counts_exactly_like_hf(variant):
    assert vitgraph.load(variant).summary().params == HF_COUNTS[variant]


def test_pvt_tiny_macs_are_within_five_percent_of_the_paper():
    assert abs(vitgraph.load("pvt_tiny").summary().macs / 1e9 - 1.9) / 1.9 < 0.05


@pytest.mark.parametrize("variant", sorted(HF_COUNTS))
def test_every_pvt_variant_runs_forward_and_backward_at_a_small_size(variant):
    model = vitgraph.build(variant, overrides=SMALL)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1000)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_pvt_tiny_gives_hf_logits_after_a_weight_transplant():
    reference = redraw_(transformers.PvtForImageClassification(transformers.PvtConfig()).eval())
    ours = from_transformers_pvt(reference)
    assert_same_logits(ours, _Logits(reference), torch.randn(1, 3, 224, 224))


def test_a_reduced_pvt_gives_hf_logits_with_deeper_stages_and_other_widths():
    config = transformers.PvtConfig(
        image_size=64, depths=[1, 2, 1, 2], hidden_sizes=[32, 64, 160, 256], num_labels=10
    )
    reference = redraw_(transformers.PvtForImageClassification(config).eval())
    assert_same_logits(
        from_transformers_pvt(reference), _Logits(reference), torch.randn(2, 3, 64, 64)
    )


def test_pvt_state_dict_reads_like_the_official_code():
    keys = set(vitgraph.build("pvt_tiny", overrides=SMALL).state_dict())
    assert {
        "stages.0.patch_embed.proj.weight",
        "stages.0.pos_embed",
        "stages.3.cls_token",
        "stages.0.blocks.0.attn.sr.weight",
        "stages.0.blocks.0.attn.kv.weight",
        "stages.0.blocks.0.attn.norm.weight",
        "head.weight",
    } <= keys
    assert "stages.3.blocks.0.attn.sr.weight" not in keys  # sr_ratio 1 in the last stage


def test_pvt_feature_taps_are_the_four_stage_outputs():
    graph = vitgraph.load("pvt_tiny")
    assert graph.feature_shapes() == {
        "stages.0": (3136, 64),
        "stages.1": (784, 128),
        "stages.2": (196, 320),
        "stages.3": (50, 512),
    }
    rows = [r.id for r in graph.summary().grouped()]
    assert rows[:4] == ["stages.0", "stages.1", "stages.2", "stages.3"]
