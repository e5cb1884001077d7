"""PiT (arXiv:2103.16302): the pit spec's grids, and ``from_timm`` beyond timm's
registered models (a non-square input, dropouts, both heads in training). Counts and
parity per timm model: tests/families.py."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_

timm = pytest.importorskip("timm")


def test_pit_ti_grid_is_27_then_14_then_7_with_widths_64_128_256():
    graph = vitgraph.load("pit_ti")
    assert graph.type_of("pos_embed").grid == (27, 27)
    assert graph.type_of("transformers.1.pool").grid == (14, 14)
    assert graph.type_of("transformers.2.pool").grid == (7, 7)
    assert [graph.type_of(f"transformers.{i}").dim for i in range(3)] == [64, 128, 256]


def _reduced(name: str) -> torch.nn.Module:
    return timm.create_model(name, pretrained=False, img_size=64, depth=[1, 1, 1]).eval()


def test_from_timm_on_a_non_square_input_with_dropouts_and_drop_path():
    reference = redraw_(
        timm.create_model(
            "pit_xs_224",
            pretrained=False,
            img_size=(48, 80),
            depth=[1, 1, 2],
            drop_path_rate=0.2,
            pos_drop_rate=0.1,
            drop_rate=0.1,
            num_classes=7,
        )
    ).eval()
    ours = vitgraph.from_timm(reference)
    assert_same_logits(ours, reference, torch.randn(2, 3, 48, 80))
    rates = [m.rate for n, m in ours.named_modules() if type(m).__name__ == "DropPath"]
    assert rates == pytest.approx([0.2 / 3] * 2 + [0.4 / 3] * 2 + [0.2] * 2)  # both branches


def test_distilled_pit_returns_both_heads_in_training_like_timm():
    reference = redraw_(_reduced("pit_ti_distilled_224"))
    reference.set_distilled_training(True)
    ours = vitgraph.from_timm(reference.train())
    x = torch.randn(2, 3, 64, 64)
    reference.eval()
    ours.eval()
    reference.train()
    ours.train()
    with torch.no_grad():
        theirs_out, ours_out = reference(x), ours(x)
    assert isinstance(ours_out, tuple) and len(ours_out) == 2
    for a, b in zip(ours_out, theirs_out, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
