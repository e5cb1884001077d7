"""CaiT (arXiv:2103.17239): from_timm parity for every timm ``cait_*`` model, exact
parameter counts, and the class-attention stage's defining property (only the class
token changes)."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph import SpecError

timm = pytest.importorskip("timm")

CAIT_MODELS = sorted(timm.list_models("cait_*"))
# our variant -> (timm model, kwargs that give the same architecture)
SOURCES = {
    "cait_xxs24": ("cait_xxs24_224", {}),
    "cait_xxs24_384": ("cait_xxs24_384", {}),
    "cait_xxs36": ("cait_xxs36_224", {}),
    "cait_xxs36_384": ("cait_xxs36_384", {}),
    "cait_xs24": ("cait_xs24_384", {"img_size": 224}),
    "cait_xs24_384": ("cait_xs24_384", {}),
    "cait_s24": ("cait_s24_224", {}),
    "cait_s24_384": ("cait_s24_384", {}),
    "cait_s36": ("cait_s36_384", {"img_size": 224}),
    "cait_s36_384": ("cait_s36_384", {}),
    "cait_m36": ("cait_m36_384", {"img_size": 224}),
    "cait_m36_384": ("cait_m36_384", {}),
    "cait_m48_448": ("cait_m48_448", {}),
}


HEADS = {"xxs": 4, "xs": 6, "s": 8, "m": 16}


def _resolution(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def _reduced(name: str) -> torch.nn.Module:
    """Two talking-heads layers and the two class-attention layers, at the model's own
    resolution and head count, 8 channels per head."""
    heads = HEADS[name.split("_")[1].rstrip("0123456789")]
    model = timm.create_model(name, pretrained=False, depth=2, embed_dim=8 * heads, num_heads=heads)
    return redraw_(model.eval())


def test_every_timm_cait_model_has_a_variant():
    assert {timm_name for timm_name, extra in SOURCES.values() if not extra} == set(CAIT_MODELS)


def test_cait_xxs24_has_the_reference_parameter_count():
    assert vitgraph.load("cait_xxs24").summary().params == 11_956_264


@pytest.mark.parametrize("variant", sorted(SOURCES))
def test_variant_parameter_count_equals_timm(variant):
    timm_name, extra = SOURCES[variant]
    with torch.device("meta"):
        reference = timm.create_model(timm_name, pretrained=False, **extra)
    expected = sum(p.numel() for p in reference.parameters())
    assert vitgraph.load(variant).summary().params == expected


@pytest.mark.parametrize("name", CAIT_MODELS)
def test_from_timm_gives_timm_logits_at_the_models_own_resolution(name):
    reference = _reduced(name)
    ours = vitgraph.from_timm(reference)
    size = _resolution(name)
    assert_same_logits(ours, reference, torch.randn(1, 3, size, size))
    assert set(ours.state_dict()) == {
        k.replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        for k in reference.state_dict()
    }


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


def test_from_timm_refuses_a_model_without_a_classifier():
    model = timm.create_model("cait_xxs24_224", pretrained=False, depth=1, num_classes=0)
    with pytest.raises(SpecError, match="num_classes=0"):
        vitgraph.from_timm(model)


@pytest.mark.parametrize("variant", sorted(SOURCES))
def test_variant_runs_forward_and_backward_when_reduced(variant):
    model = vitgraph.load(
        variant, overrides={"depth": 1, "class_depth": 1, "image_size": 32, "classes": 5}
    ).build()
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 5)
    assert model.get_submodule("blocks.0.attn.proj_l").weight.grad is not None


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


@pytest.mark.slow
@pytest.mark.parametrize("name", CAIT_MODELS)
def test_full_size_from_timm_gives_timm_logits(name):
    torch.set_num_threads(2)
    reference = redraw_(timm.create_model(name, pretrained=False).eval())
    ours = vitgraph.from_timm(reference)
    size = _resolution(name)
    diff = assert_same_logits(ours, reference, torch.randn(1, 3, size, size))
    print(f"{name}: max |Δ| {diff:.2e}")
