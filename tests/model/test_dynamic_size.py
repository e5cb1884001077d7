"""``dynamic_img_size``: a ViT whose position table is resized to each input's grid in
the forward equals timm's (``dynamic_img_size=True``) at other sizes, and torchvision's
fx feature extraction still traces it."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph import SpecError

timm = pytest.importorskip("timm")


@pytest.mark.parametrize(
    ("name", "sizes"),
    [
        ("vit_small_patch16_224", [(160, 224), (288, 288)]),
        ("deit3_small_patch16_224", [(160, 224), (288, 288)]),
        ("vit_small_patch14_reg4_dinov2", [(112, 140), (70, 98)]),
    ],
)
def test_dynamic_model_equals_timms_at_other_sizes(name, sizes):
    reference = redraw_(timm.create_model(name, depth=2, dynamic_img_size=True)).eval()
    ours = vitgraph.from_timm(reference)
    assert ours.pretrained_cfg["fixed_input_size"] is False
    for size in sizes:
        assert_same_logits(ours, reference, torch.randn(2, 3, *size))


def test_fx_feature_extraction_traces_a_dynamic_model_and_runs_it_at_another_size():
    extraction = pytest.importorskip("torchvision.models.feature_extraction")
    reference = redraw_(timm.create_model("vit_tiny_patch16_224", depth=1, dynamic_img_size=True))
    ours = vitgraph.from_timm(reference).eval()
    _, nodes = extraction.get_graph_node_names(ours)
    traced = extraction.create_feature_extractor(ours, return_nodes=[nodes[-1]])
    x = torch.randn(1, 3, 112, 160)
    with torch.no_grad():
        assert torch.equal(next(iter(traced(x).values())), ours(x))


def test_a_side_the_patch_does_not_divide_is_refused_without_padding_as_timms():
    reference = redraw_(timm.create_model("vit_tiny_patch16_224", depth=1, dynamic_img_size=True))
    ours = vitgraph.from_timm(reference).eval()
    x = torch.randn(1, 3, 150, 224)
    with pytest.raises(AssertionError, match="divisible by patch size"):
        reference(x)
    with pytest.raises(ValueError, match="150x224 is not a whole number of 16x16 patches"):
        ours(x)


def test_a_fixed_size_model_reports_a_fixed_input_size():
    model = vitgraph.build("vit_ti_16", overrides={"depth": 1})
    assert model.pretrained_cfg["fixed_input_size"] is True


def test_dynamic_table_without_the_image_is_a_located_error():
    text = """
vitgraph: 1
name: t
input: {channels: 3, size: 32}
graph:
  - {id: patch_embed, kind: patch_embed, patch: 8, dim: 16}
  - {id: pos, kind: learned_pos, dynamic: true}
"""
    with pytest.raises(SpecError, match=r":7:\d+: pos.*second input is missing") as info:
        vitgraph.load("t.yaml", text=text)
    assert "inputs: [<tokens>, input]" in str(info.value)


@pytest.mark.parametrize("size", [(150, 230), (224, 224)])
def test_timms_dynamic_padding_converts_and_equals_timm_at_a_size_the_patch_does_not_divide(size):
    reference = redraw_(
        timm.create_model(
            "vit_tiny_patch16_224", depth=1, dynamic_img_size=True, dynamic_img_pad=True
        )
    ).eval()
    ours = vitgraph.from_timm(reference)
    assert_same_logits(ours, reference, torch.randn(2, 3, *size))


def test_a_padding_patch_embedding_counts_the_partial_patches_in_its_grid():
    text = """
vitgraph: 1
name: t
input: {channels: 3, size: [36, 50]}
graph:
  - {id: patch_embed, kind: patch_embed, patch: 8, dim: 16, dynamic_pad: true}
  - {id: pos, kind: learned_pos}
"""
    graph = vitgraph.load("t.yaml", text=text)
    assert graph.type_of("patch_embed").grid == (5, 7)
    assert graph.build()(torch.randn(1, 3, 36, 50)).shape == (1, 35, 16)


def test_a_padded_grid_without_a_dynamic_table_is_a_located_error():
    graph = vitgraph.load("vit_ti_16", overrides={"depth": 1})
    with pytest.raises(SpecError, match=r"pos_embed.*dynamic_pad rounds the grid"):
        graph.update("pos_embed", dynamic_pad=True)


@pytest.mark.parametrize(("size", "pad"), [((160, 224), False), ((150, 230), True)])
def test_intermediates_of_a_dynamic_model_are_maps_of_the_inputs_grid_as_timms(size, pad):
    reference = redraw_(
        timm.create_model(
            "vit_small_patch16_224", depth=3, dynamic_img_size=True, dynamic_img_pad=pad
        )
    ).eval()
    ours = vitgraph.from_timm(reference).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        final, maps = reference.forward_intermediates(x, indices=[0, 2], norm=True)
        our_final, our_maps = ours.forward_intermediates(x, indices=[0, 2], norm=True)
    assert torch.allclose(our_final, final, atol=1e-5)
    rows, cols = -(-size[0] // 16), -(-size[1] // 16)
    assert [tuple(m.shape) for m in our_maps] == [(2, 384, rows, cols)] * 2
    for ours_map, map_ in zip(our_maps, maps, strict=True):
        assert torch.allclose(ours_map, map_, atol=1e-5)


def test_features_only_of_a_dynamic_model_gives_maps_of_the_inputs_grid():
    taps = vitgraph.create_model("vit_s_16", depth=2, dynamic_img_size=True, features_only=True)
    shapes = [tuple(t.shape) for t in taps(torch.randn(1, 3, 160, 224))]
    assert shapes == [(1, 384, 10, 14)] * 2


@pytest.mark.parametrize(
    "name",
    [
        "swin_tiny_patch4_window7_224",
        pytest.param("swinv2_tiny_window8_256", marks=pytest.mark.slow),
    ],
)
def test_intermediates_and_features_of_a_dynamic_swin_are_on_the_inputs_grids_as_timms(name):
    reference = redraw_(
        timm.create_model(
            name, depths=(1, 1, 2, 1), embed_dim=16, num_heads=(1, 1, 2, 2), strict_img_size=False
        )
    ).eval()
    ours = vitgraph.from_timm(reference).eval()
    x = torch.randn(1, 3, 256, 192)  # grids 64x48 .. 8x6
    with torch.no_grad():
        final, maps = reference.forward_intermediates(x, norm=True)
        our_final, our_maps = ours.forward_intermediates(x, norm=True)
        features, our_features = reference.forward_features(x), ours.forward_features(x)
    assert tuple(our_features.shape) == (1, 8, 6, 128)  # NHWC, as timm's
    torch.testing.assert_close(our_features, features, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(our_final, final, atol=1e-5, rtol=1e-4)
    assert [tuple(m.shape[-2:]) for m in our_maps] == [(64, 48), (32, 24), (16, 12), (8, 6)]
    for ours_map, map_ in zip(our_maps, maps, strict=True):
        torch.testing.assert_close(ours_map, map_, atol=1e-5, rtol=1e-4)
    from vitgraph.model.features import features_only

    taps = features_only(ours, None)  # the stages' outputs, unnormed
    with torch.no_grad():
        unnormed = reference.forward_intermediates(x, intermediates_only=True)
        for tap, map_ in zip(taps(x), unnormed, strict=True):
            torch.testing.assert_close(tap, map_, atol=1e-5, rtol=1e-4)
