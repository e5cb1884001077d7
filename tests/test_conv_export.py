"""Every convolution-family model traces with torch.fx and exports with torch.export, and
the exported program computes the same logits (no Python branching on tensor values)."""

from __future__ import annotations

import pytest
import torch

import vitgraph

SMALL = {
    "levit_128s": {"image_size": 64, "depths": [1, 1, 1]},
    "cvt_13": {"image_size": 64, "depths": [1, 1, 1], "dims": [16, 32, 48], "heads": [1, 2, 3]},
    "ceit_t": {"image_size": 32, "dim": 48},
    "bot50": {"image_size": 64, "layout": [[0], [0], [0, 1], [1]]},
    "botnet_s1_59": {"image_size": 64, "layout": [[0], [0], [0], [1, 1]],
                     "widths": [64, 128, 256, 512]},
}


@pytest.mark.parametrize("variant", sorted(SMALL))
def test_conv_family_model_traces_and_exports_to_the_same_function(variant):
    model = vitgraph.build(variant, overrides=SMALL[variant]).eval()
    size = SMALL[variant]["image_size"]
    x = torch.randn(2, 3, size, size)
    traced = torch.fx.symbolic_trace(model)
    exported = torch.export.export(model, (x,)).module()
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(traced(x), expected, atol=1e-5)
        assert torch.allclose(exported(x), expected, atol=1e-5)
