"""from_timm on timm's ViT / DeiT: same logits (≤1e-4, fp32, eval) after re-drawing every
weight of the timm model. Reduced depth and resolution keep the suite fast; each config
covers a distinct block structure (class token, distillation, /32 patch, non-224 input,
mean pooling with fc_norm, LayerScale + no_embed_class)."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph import SpecError

timm = pytest.importorskip("timm")

CONFIGS = {
    "vit_tiny_patch16_224": {"depth": 2, "img_size": 64},
    "vit_small_patch16_224": {"depth": 2, "img_size": 64},
    "vit_base_patch32_224": {"depth": 2, "img_size": 96},
    "vit_small_patch16_384": {"depth": 2, "img_size": 80},
    "deit_tiny_distilled_patch16_224": {"depth": 2, "img_size": 64},
    "vit_small_patch16_224_avg": {"depth": 2, "img_size": 64},
    "deit3_small_patch16_224": {"depth": 2, "img_size": 64},
    "vit_tiny_patch16_224_nocls": {"depth": 2, "img_size": 48},
}
KWARGS = {
    "vit_small_patch16_224_avg": (
        "vit_small_patch16_224",
        {"global_pool": "avg", "class_token": False, "fc_norm": True},
    ),
    "vit_tiny_patch16_224_nocls": (
        "vit_tiny_patch16_224",
        {"global_pool": "avg", "class_token": False, "fc_norm": False, "num_classes": 17},
    ),
}


def make(name: str) -> torch.nn.Module:
    base, extra = KWARGS.get(name, (name, {}))
    return timm.create_model(base, pretrained=False, **CONFIGS[name], **extra).eval()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_from_timm_gives_timm_logits(name):
    reference = redraw_(make(name))
    ours = vitgraph.from_timm(reference)
    size = reference.patch_embed.img_size
    x = torch.randn(2, 3, *size)
    assert_same_logits(ours, reference, x)
    assert list(ours.state_dict()) == list(reference.state_dict()) or set(ours.state_dict()) == set(
        reference.state_dict()
    )


def test_distilled_model_returns_both_heads_in_training_like_timm():
    reference = redraw_(make("deit_tiny_distilled_patch16_224"))
    reference.set_distilled_training(True)
    ours = vitgraph.from_timm(reference)
    x = torch.randn(2, 3, 64, 64)
    ours.train()
    reference.train()
    with torch.no_grad():
        cls_ours, dist_ours = ours(x)
        cls_ref, dist_ref = reference(x)
    assert torch.allclose(cls_ours, cls_ref, atol=1e-4) and torch.allclose(
        dist_ours, dist_ref, atol=1e-4
    )
    ours.set_distilled_training(False)
    assert ours(x).shape == (2, 1000)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"reg_tokens": 4}, "register tokens"),
        ({"qk_norm": True}, "qk_norm"),
        ({"global_pool": "map"}, "attention pooling"),
    ],
)
def test_unsupported_timm_option_is_refused_by_name(kwargs, option):
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, depth=1, img_size=32, **kwargs
    )
    with pytest.raises(SpecError, match=option):
        vitgraph.from_timm(model)


def test_full_size_from_timm_counts_match_on_meta():
    with torch.device("meta"):
        reference = timm.create_model("deit_small_distilled_patch16_224", pretrained=False)
    from vitgraph.interop.timm import converter_for

    spec = converter_for(reference)(reference).spec
    import yaml

    graph = vitgraph.load("<timm>", text=yaml.safe_dump(spec))
    assert graph.summary().params == sum(p.numel() for p in reference.parameters())
