"""The attention kinds of this family trace with torch.fx and export with torch.export
(no Python branching on tensor values or shapes), and the exported program computes
the same logits."""

from __future__ import annotations

import pytest
import torch

import vitgraph

SMALL = {
    "cait_xxs24": ({"depth": 1, "class_depth": 1, "image_size": 32, "dim": 32}, 32),
    "twins_svt_s": ({"depths": [2, 2, 2, 2], "dims": [8, 16, 32, 64], "heads": [1, 2, 4, 8]},
                    224),
    "deepvit_s": ({"depth": 2, "reattention_layers": 1, "image_size": 32, "dim": 48}, 32),
}


@pytest.mark.parametrize("variant", sorted(SMALL))
def test_every_submodule_traces_with_fx(variant):
    overrides, _ = SMALL[variant]
    model = vitgraph.load(variant, overrides=overrides).build()
    traced = {name for name, module in model.named_modules()
              if type(module).__module__.startswith("vitgraph.blocks")}
    for name in traced:
        torch.fx.symbolic_trace(model.get_submodule(name))
    assert traced


@pytest.mark.parametrize("variant", sorted(SMALL))
def test_model_exports_and_the_program_gives_the_same_logits(variant):
    overrides, size = SMALL[variant]
    model = vitgraph.load(variant, overrides=overrides).build().eval()
    x = torch.randn(2, 3, size, size)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), atol=1e-5)
