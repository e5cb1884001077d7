"""CaiT (arXiv:2103.17239): ``from_timm`` beyond timm's registered models (average
pooling, a reduced width, a refused headless model), and the class-attention stage's
defining property (only the class token changes). Counts and parity per timm model:
tests/families.py."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph import SpecError

timm = pytest.importorskip("timm")


def test_from_timm_keeps_avg_pooling_and_a_reduced_width():
    reference = timm.create_model(
        "cait_xxs24_224",
        pretrained=False,
        depth=1,
        img_size=32,
        embed_dim=48,
        num_heads=3,
        global_pool="avg",
        num_classes=7,
        depth_token_only=1,
        mlp_ratio_token_only=2.0,
    )
    reference = redraw_(reference.eval())
    assert_same_logits(vitgraph.from_timm(reference), reference, torch.randn(2, 3, 32, 32))


def test_from_timm_of_a_model_without_a_classifier_gives_its_pooled_features():
    model = timm.create_model("cait_xxs24_224", pretrained=False, depth=1, num_classes=0)
    reference = redraw_(model.eval())
    ours = vitgraph.from_timm(reference)
    assert ours.num_classes == 0
    assert_same_logits(ours, reference, torch.randn(2, 3, 224, 224))


def test_class_attention_layer_updates_only_the_class_token():
    spec = """
vitgraph: 1
name: ca
input: {channels: 3, size: 32}
graph:
  - {id: patch_embed, kind: patch_embed, patch: 8, dim: 32}
  - {id: cls_token, kind: cls_token}
  - {id: ca, kind: class_attention_layer, heads: 4, layer_scale: 0.5}
"""
    model = vitgraph.load("<ca>", text=spec).build().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        tokens = model.patch_embed(x)
    assert out.shape == (2, 17, 32)
    assert torch.equal(out[:, 1:], tokens)
    assert not torch.allclose(out[:, 0], model.cls_token.expand(2, -1, -1)[:, 0])


def test_class_attention_without_a_class_token_is_a_located_error():
    spec = """vitgraph: 1
name: ca
input: {channels: 3, size: 32}
graph:
  - {id: patch_embed, kind: patch_embed, patch: 8, dim: 32}
  - {id: ca, kind: class_attention_layer, heads: 4}
"""
    with pytest.raises(SpecError) as info:
        vitgraph.load("<ca>", text=spec)
    assert str(info.value) == (
        "<ca>:6:20: ca.attn: class_attention needs a class token in front of the patches, but "
        "receives tokens 16x32, grid 4x4\n  hint: add a cls_token node before it"
    )
