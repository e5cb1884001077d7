"""The multi-scale blocks (Swin, PVT, CrossViT, TNT) are fx-traceable and
torch.export-able: the compiled models (and each block module on its own) trace, and
the exported program gives the same outputs."""

from __future__ import annotations

import pytest
import torch

import vitgraph

CASES = {
    "swin_t": ({"image_size": 64, "window": 4, "depths": [1, 2, 1, 1]}, 64),
    "pvt_tiny": ({"image_size": 64, "depths": [1, 1, 1, 1]}, 64),
    "crossvit_9_dagger": ({"image_size": 48, "large_size": 32, "encoders": 2,
                           "depth_large": 1}, 48),
    "tnt_s": ({"image_size": 32, "depth": 2}, 32),
}


@pytest.mark.parametrize("variant", sorted(CASES))
def test_multiscale_model_traces_and_exports_to_the_same_function(variant):
    overrides, size = CASES[variant]
    model = vitgraph.build(variant, overrides=overrides).eval()
    x = torch.randn(2, 3, size, size)
    for module in model.modules():
        if type(module).__module__.startswith("vitgraph.blocks"):
            torch.fx.symbolic_trace(module)
    exported = torch.export.export(model, (x,)).module()
    with torch.no_grad():
        assert torch.equal(exported(x), model(x))
        assert torch.equal(torch.fx.symbolic_trace(model)(x), model(x))
