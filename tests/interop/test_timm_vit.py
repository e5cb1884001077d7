"""from_timm on timm's ViT / DeiT: distilled training, options refused by name, and the
full-size count of a converted spec (the logits of a reduced copy per block structure:
tests/families.py)."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import redraw_
from tests.references import vit_reduced
from vitgraph import SpecError

timm = pytest.importorskip("timm")


def test_distilled_model_returns_both_heads_in_training_like_timm():
    reference = redraw_(vit_reduced("deit_tiny_distilled_patch16_224"))
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
        ({"scale_attn_norm": True}, "scale_attn_norm"),
        ({"block_fn": timm.models.vision_transformer.ParallelScalingBlock}, "block_fn"),
        ({"global_pool": "prr"}, "attention pooling"),
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


def test_clip_image_tower_with_pre_norm_and_quick_gelu_gives_timms_function():
    from tests.interop.parity import compare, timm_state_map

    reference = timm.create_model(
        "vit_base_patch32_clip_quickgelu_224", pretrained=False, depth=2, img_size=64
    )
    assert type(reference.blocks[0].mlp.act).__name__ == "QuickGELU"
    reference = redraw_(reference).eval()
    ours = vitgraph.from_timm(reference)
    assert ours.norm_pre.eps == reference.norm_pre.eps  # the norm before the blocks
    x = torch.randn(2, 3, 64, 64)
    assert compare(ours, reference, timm_state_map(reference), x) == []
