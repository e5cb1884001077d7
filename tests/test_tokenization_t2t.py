"""T2T-ViT (arXiv:2101.11986): soft split, the tokens-to-token layers (performer and
transformer), the fixed sinusoid table, and the t2t_vit spec.

There is no pip package of the official code: the logit-parity tests import it from a
checkout named by ``T2T_VIT_OFFICIAL`` (yitu-opensource/T2T-ViT, which holds ``models/``;
read at test time, never vendored) and are skipped without one.
"""

from __future__ import annotations

import os
import re
import sys

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph.blocks.sinusoid_pos import sinusoid_1d

OFFICIAL = {  # official repository: sum of numel over model.parameters()
    "t2t_vit_7": 4_310_222,
}
PAPER = {  # Table 1 / README: params (M), MACs (G)
    "t2t_vit_7": (4.3, 1.1),
    "t2t_vit_14": (21.5, 4.8),
    "t2t_vit_19": (39.2, 8.5),
    "t2t_vit_24": (64.1, 13.8),
    "t2t_vit_t_14": (21.5, 6.1),
}


def official(name: str, **kwargs) -> torch.nn.Module:
    root = os.environ.get("T2T_VIT_OFFICIAL")
    if not root:
        pytest.skip("set T2T_VIT_OFFICIAL to a checkout of yitu-opensource/T2T-ViT")
    sys.path.insert(0, root)
    try:
        from models import t2t_vit
    finally:
        sys.path.remove(root)
    return getattr(t2t_vit, name)(**kwargs)


def to_ours(key: str) -> str:
    key = re.sub(r"(attention\d)\.(kqv|w)\b", r"\1.attn.\2", key)
    key = re.sub(r"(attention\d)\.proj\.", r"\1.attn.proj.", key)
    key = re.sub(r"(attention\d)\.mlp\.0\.", r"\1.mlp.fc1.", key)
    return re.sub(r"(attention\d)\.mlp\.2\.", r"\1.mlp.fc2.", key)


def test_t2t_vit_7_has_the_official_count_to_the_unit():
    assert vitgraph.load("t2t_vit_7").summary().params == OFFICIAL["t2t_vit_7"]


@pytest.mark.parametrize("variant", sorted(PAPER))
def test_t2t_params_within_one_percent_and_macs_within_ten_percent_of_the_paper(variant):
    summary = vitgraph.load(variant).summary()
    params, gmacs = PAPER[variant]
    assert abs(summary.params / 1e6 - params) / params < 0.01
    assert abs(summary.macs / 1e9 - gmacs) / gmacs < 0.10


def test_soft_splits_take_224_pixels_to_56_28_14_grids_of_147_576_576_wide_tokens():
    graph = vitgraph.load("t2t_vit_14")
    types = [graph.type_of(f"tokens_to_token.soft_split{i}") for i in range(3)]
    assert [t.grid for t in types] == [(56, 56), (28, 28), (14, 14)]
    assert [t.dim for t in types] == [147, 576, 576]
    assert graph.type_of("tokens_to_token.attention1").dim == 64
    assert graph.type_of("pos_embed").shape == (197, 384)


def test_sinusoid_table_is_a_frozen_parameter_with_sin_on_even_and_cos_on_odd_channels():
    model = vitgraph.load("t2t_vit_7", overrides={"image_size": 32, "depth": 1}).build()
    table = model.get_parameter("pos_embed")
    assert not table.requires_grad and table.shape == (1, 5, 256)
    assert table[0, 3, 0] == pytest.approx(torch.sin(torch.tensor(3.0)).item())
    assert table[0, 3, 1] == pytest.approx(torch.cos(torch.tensor(3.0)).item())
    p, i, d = 2, 10, 256  # channel 2i+1 = 21: cos(p / 10000^(2i/d))
    assert sinusoid_1d(5, d, 10000.0)[p, 2 * i + 1].item() == pytest.approx(
        torch.cos(torch.tensor(p / 10000 ** (2 * i / d))).item(), abs=1e-6
    )
    performer_w = model.get_parameter("tokens_to_token.attention1.attn.w")
    assert not performer_w.requires_grad and performer_w.shape == (32, 64)


@pytest.mark.parametrize("variant", sorted(PAPER))
def test_t2t_variant_runs_forward_and_backward_at_a_small_size(variant):
    model = vitgraph.load(variant, overrides={"image_size": 32, "depth": 1}).build()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert model.get_parameter("tokens_to_token.attention1.norm1.weight").grad is not None
    assert model.get_parameter("pos_embed").grad is None


@pytest.mark.parametrize("variant", sorted(OFFICIAL))
def test_t2t_count_equals_the_official_code(variant):
    reference = official(variant)
    assert vitgraph.load(variant).summary().params == sum(p.numel() for p in reference.parameters())


# the official factories' settings with depth 2, built through its T2T_ViT class
REDUCED = {
    "t2t_vit_7": dict(tokens_type="performer", embed_dim=256, num_heads=4, mlp_ratio=2.0),
    "t2t_vit_t_14": dict(tokens_type="transformer", embed_dim=384, num_heads=6, mlp_ratio=3.0),
}


@pytest.mark.parametrize("variant", sorted(REDUCED))
def test_t2t_gives_the_official_logits_after_weight_transfer(variant):
    reference = redraw_(official("T2T_ViT", img_size=64, depth=2, **REDUCED[variant])).eval()
    ours = vitgraph.load(variant, overrides={"image_size": 64, "depth": 2}).build()
    ours.load_state_dict({to_ours(k): v for k, v in reference.state_dict().items()}, strict=True)
    assert_same_logits(ours, reference, torch.randn(2, 3, 64, 64))
