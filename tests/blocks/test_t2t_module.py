"""T2T-ViT (arXiv:2101.11986): the soft splits' grids and the fixed sinusoid table (the
official code's count and logits, the paper's numbers: tests/families.py)."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from vitgraph.blocks.sinusoid_pos import sinusoid_1d


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
