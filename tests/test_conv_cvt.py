"""CvT (arXiv:2103.15808): counts against HuggingFace's ``CvtForImageClassification`` and
logits equal to it after a weight transplant (HF keys renamed to the official ones)."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_

transformers = pytest.importorskip("transformers")

# HF counts with num_labels=1000 (CvtConfig's default has 2 labels)
HF_CONFIGS = {
    "cvt_13": {},
    "cvt_21": {"depth": [1, 4, 16]},
    "cvt_w24": {"embed_dim": [192, 768, 1024], "num_heads": [3, 12, 16], "depth": [2, 2, 20]},
}
HF_PARAMS = {"cvt_13": 19_997_480, "cvt_21": 31_622_696, "cvt_w24": 277_196_392}
PAPER_GMACS = {"cvt_13": 4.5, "cvt_21": 7.1, "cvt_w24": 193.2}  # Table 3 (W24 at 384)


def hf_key_to_ours(key: str) -> str:
    from vitgraph.interop.hf_cvt import cvt_key  # from_hf's own key map

    return cvt_key(key)


def transplant(reference, ours) -> None:
    mapped = {hf_key_to_ours(k): v for k, v in reference.state_dict().items()}
    assert set(mapped) == set(ours.state_dict())
    ours.load_state_dict(mapped)


def hf_cvt(**config):
    from transformers import CvtConfig, CvtForImageClassification

    return CvtForImageClassification(CvtConfig(**config))


class Logits(torch.nn.Module):
    """HF's model returning a plain logits tensor."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits


@pytest.mark.parametrize("variant", sorted(HF_PARAMS))
def test_cvt_param_count_equals_huggingface_to_the_unit(variant):
    assert vitgraph.load(variant).summary().params == HF_PARAMS[variant]


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(HF_PARAMS))
def test_huggingface_counts_are_what_the_table_says(variant):
    with torch.device("meta"):
        reference = hf_cvt(num_labels=1000, **HF_CONFIGS[variant])
    assert sum(p.numel() for p in reference.parameters()) == HF_PARAMS[variant]


@pytest.mark.parametrize("variant", sorted(PAPER_GMACS))
def test_cvt_macs_are_within_two_percent_of_the_paper(variant):
    macs = vitgraph.load(variant).summary().macs / 1e9
    assert abs(macs - PAPER_GMACS[variant]) / PAPER_GMACS[variant] < 0.02


def test_reduced_cvt_gives_the_same_logits_as_huggingface_after_transplant():
    # HF indexes its per-stage drop-path list by the stage, so depth[i] must exceed i
    dims, heads, depths = [16, 32, 48], [1, 2, 3], [1, 2, 3]
    reference = redraw_(hf_cvt(embed_dim=dims, num_heads=heads, depth=depths, num_labels=10))
    ours = vitgraph.build(
        "cvt_13",
        overrides={"image_size": 64, "dims": dims, "heads": heads, "depths": depths, "classes": 10},
    )
    transplant(reference, ours)
    assert_same_logits(ours, Logits(reference), torch.randn(2, 3, 64, 64))


@pytest.mark.slow
def test_full_cvt_13_gives_the_same_logits_as_huggingface_after_transplant():
    reference = redraw_(hf_cvt(num_labels=1000))
    ours = vitgraph.build("cvt_13")
    transplant(reference, ours)
    diff = assert_same_logits(ours, Logits(reference), torch.randn(2, 3, 224, 224))
    print(f"cvt_13: max |logit diff| {diff:.2e}")  # quoted in reports (pytest -s)


@pytest.mark.parametrize("variant", sorted(HF_PARAMS))
def test_cvt_variant_runs_forward_and_backward_at_64_pixels(variant):
    model = vitgraph.build(
        variant, overrides={"image_size": 64, "depths": [1, 1, 1], "classes": 10}
    )
    logits = model(torch.randn(2, 3, 64, 64))
    logits.sum().backward()
    assert logits.shape == (2, 10)
    assert all(p.grad is not None for p in model.parameters())


def test_cvt_class_token_joins_only_the_last_stage_and_bypasses_the_conv_projection():
    summary = vitgraph.load("cvt_13").summary()
    rows = {r.id: r for r in summary.rows}
    assert rows["stage1.blocks.1.residual2"].output_shape == (28 * 28, 192)
    assert rows["stage2.blocks.0.residual2"].output_shape == (1 + 14 * 14, 384)
    model = vitgraph.build("cvt_13", overrides={"image_size": 64, "depths": [1, 1, 1]})
    attn = model.get_submodule("stage2.blocks.0.attn")
    x = torch.randn(2, 1 + 4 * 4, 384)  # 64 px: a 4x4 grid in the last stage
    # a depthwise conv never sees the class token: changing it leaves the conv outputs alone
    fmap = x[:, 1:].transpose(1, 2).unflatten(2, (4, 4))
    assert attn.conv_proj_q.conv.in_channels == 384 == attn.conv_proj_q.conv.groups
    assert attn.conv_proj_k(fmap).shape == (2, 2 * 2, 384)  # stride 2 -> 2x2 keys
    assert attn(x).shape == x.shape


def test_cvt_has_no_position_table():
    keys = vitgraph.build("cvt_13", device="meta").state_dict()
    assert not any("pos" in k for k in keys)
    assert [k for k in keys if "cls_token" in k] == ["stage2.cls_token"]
