"""CeiT (arXiv:2103.11816): counts against the official coeusguo/ceit code, and logits
equal to it after a weight transplant when that file is given (it is not pip-installable
and is never committed: set VITGRAPH_CEIT_OFFICIAL to a local copy of ``ceit_model.py``)."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_

# official ceit_model.py (pretrained=False), 1000 classes; paper Table 1: 6.4M / 24.2M / 94.4M
OFFICIAL_PARAMS = {
    "ceit_t": 6_356_904,
    "ceit_s": 24_204_840,
    "ceit_b": 94_405_416,
    "ceit_t_384": 6_429_864,
    "ceit_s_384": 24_350_760,
}
OFFICIAL_NAMES = {
    "ceit_t": "ceit_tiny_patch16_224",
    "ceit_s": "ceit_small_patch16_224",
    "ceit_b": "ceit_base_patch16_224",
    "ceit_t_384": "ceit_tiny_patch16_384",
    "ceit_s_384": "ceit_small_patch16_384",
}


def official():
    path = os.environ.get("VITGRAPH_CEIT_OFFICIAL")
    if not path or not os.path.isfile(path):
        pytest.skip("set VITGRAPH_CEIT_OFFICIAL to the official ceit_model.py")
    import timm.models.vision_transformer as vit

    # the official file imports two names timm 1.0 no longer exports
    vit.__dict__.setdefault("default_cfgs", {})
    vit.__dict__.setdefault("_cfg", lambda **kwargs: kwargs)
    spec = importlib.util.spec_from_file_location("ceit_official", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ceit_official", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("variant", sorted(OFFICIAL_PARAMS))
def test_ceit_param_count_equals_the_official_code_to_the_unit(variant):
    assert vitgraph.load(variant).summary().params == OFFICIAL_PARAMS[variant]


def test_ceit_t_gives_the_same_logits_as_the_official_code_after_transplant():
    reference = redraw_(official().ceit_tiny_patch16_224(img_size=64, num_classes=10))
    ours = vitgraph.build("ceit_t", overrides={"image_size": 64, "classes": 10})
    ours.load_state_dict(reference.state_dict())  # same keys: the spec uses official names
    assert_same_logits(ours, reference, torch.randn(2, 3, 64, 64))


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(OFFICIAL_NAMES))
def test_full_size_ceit_gives_the_same_logits_as_the_official_code(variant):
    reference = redraw_(getattr(official(), OFFICIAL_NAMES[variant])())
    assert sum(p.numel() for p in reference.parameters()) == OFFICIAL_PARAMS[variant]
    ours = vitgraph.build(variant)
    ours.load_state_dict(reference.state_dict())
    size = 384 if variant.endswith("384") else 224
    diff = assert_same_logits(ours, reference, torch.randn(1, 3, size, size))
    print(f"{variant}: max |logit diff| {diff:.2e}")  # quoted in reports (pytest -s)


@pytest.mark.parametrize("variant", sorted(OFFICIAL_PARAMS))
def test_ceit_variant_runs_forward_and_backward_at_32_pixels(variant):
    model = vitgraph.build(variant, overrides={"image_size": 32, "classes": 10})
    logits = model(torch.randn(2, 3, 32, 32))
    logits.sum().backward()
    assert logits.shape == (2, 10)
    assert all(p.grad is not None for p in model.parameters())


def test_ceit_t_shapes_follow_the_paper():
    rows = {r.id: r for r in vitgraph.load("ceit_t").summary().rows}
    assert rows["i2t"].output_shape == (14 * 14, 192)  # 224 -> 112 -> 56 -> 4x4 patches
    assert rows["cls_tokens"].output_shape == (12, 192)  # one class token per layer
    assert rows["pos_layer_embed"].params == 12 * 192
    assert rows["lca.residual2"].output_shape == (1, 192)


def test_leff_passes_the_class_token_through_its_convolutions_unchanged():
    model = vitgraph.build("ceit_t", overrides={"image_size": 32})
    leff = model.get_submodule("blocks.0.leff")
    redraw_(leff).eval()
    x = torch.randn(2, 1 + 2 * 2, 192)
    y = leff(x)
    assert torch.equal(y[:, 0], x[:, 0])
    x2 = x.clone()
    x2[:, 0] += 1.0  # the class token does not reach the patch tokens through LeFF
    assert torch.equal(leff(x2)[:, 1:], y[:, 1:])


def test_lca_queries_with_the_last_class_token_only():
    model = vitgraph.build("ceit_t", overrides={"image_size": 32})
    attn = model.get_submodule("lca.attn")
    redraw_(attn).eval()
    x = torch.randn(2, 12, 192)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert attn(x).shape == (2, 1, 192)
    assert not torch.allclose(attn(x), attn(x2))
