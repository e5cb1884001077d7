"""Every tokenization-family block traces: each small model goes through ``torch.export``
and the exported program computes the same logits."""

from __future__ import annotations

import pytest
import torch

import vitgraph

SMALL = {  # one config per distinct block structure, at a tiny size
    "cpvt_ti": ({"depth": 2, "image_size": 48}, 48),
    "pit_ti_distilled": ({"image_size": 48, "depths": [1, 1, 1]}, 48),
    "cct_7_3x1": ({"depth": 1}, 32),
    "t2t_vit_7": ({"depth": 1, "image_size": 32}, 32),
    "t2t_vit_t_14": ({"depth": 1, "image_size": 32}, 32),
}


@pytest.mark.parametrize("variant", sorted(SMALL))
def test_model_exports_and_the_program_gives_the_same_logits(variant):
    overrides, size = SMALL[variant]
    model = vitgraph.load(variant, overrides=overrides).build().eval()
    x = torch.randn(2, 3, size, size)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=0, atol=1e-5)
