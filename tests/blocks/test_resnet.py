"""The ResNet blocks (stem, basic, bottleneck, global average pooling) against torchvision:
the same state_dict keys (but the stem's prefix) and the same logits after re-drawing every
weight and BatchNorm statistic."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import TESTS, assert_same_logits, redraw_

models = pytest.importorskip("torchvision.models")
SPEC = str(TESTS / "specs" / "resnet_for_tests.yaml")
CONFIGS = {
    "resnet18": {"block": "basic_block", "expansion": 1, "layers": [2, 2, 2, 2]},
    "resnet34": {"block": "basic_block", "expansion": 1, "layers": [3, 4, 6, 3]},
    "resnet50": {"block": "bottleneck", "expansion": 4, "layers": [3, 4, 6, 3]},
    "resnet101": {"block": "bottleneck", "expansion": 4, "layers": [3, 4, 23, 3]},
}


def to_ours(key: str) -> str:
    return f"stem.{key}" if key.startswith(("conv1.", "bn1.")) else key


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_resnet_from_the_blocks_has_torchvision_count(name):
    with torch.device("meta"):
        expected = sum(p.numel() for p in getattr(models, name)().parameters())
    assert vitgraph.load(SPEC, overrides=CONFIGS[name]).summary().params == expected


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_from_the_blocks_gives_torchvision_logits(name):
    reference = redraw_(getattr(models, name)()).eval()
    ours = vitgraph.load(SPEC, overrides=CONFIGS[name]).build()
    ours.load_state_dict({to_ours(k): v for k, v in reference.state_dict().items()}, strict=True)
    assert_same_logits(ours, reference, torch.randn(2, 3, 64, 64))


def test_resnet_blocks_train_forward_and_backward():
    model = (
        vitgraph.load(
            SPEC, overrides={**CONFIGS["resnet50"], "layers": [1, 1, 1, 1], "image_size": 32}
        )
        .build()
        .train()
    )
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert model.get_parameter("layer4.0.downsample.0.weight").grad is not None
