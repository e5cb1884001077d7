"""``set_input_size``: a model rebuilt in place at another size equals timm's model after
timm's ``set_input_size`` with the same (re-drawn) weights."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph import SpecError

timm = pytest.importorskip("timm")


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else size


@pytest.mark.parametrize(
    ("name", "kwargs", "size"),
    [
        ("vit_small_patch16_224", {"depth": 2}, 160),
        ("vit_small_patch16_224", {"depth": 2}, 288),
        ("deit3_small_patch16_224", {"depth": 2}, 160),
        ("vit_small_patch14_reg4_dinov2", {"depth": 2, "img_size": 98}, (84, 112)),
        ("swin_tiny_patch4_window7_224", {"depths": (2, 2, 2, 2)}, 256),
        ("swinv2_tiny_window8_256", {"depths": (2, 2, 2, 2)}, 192),
    ],
)
def test_resized_model_equals_timms_after_its_set_input_size(name, kwargs, size):
    reference = redraw_(timm.create_model(name, **kwargs)).eval()
    ours = vitgraph.from_timm(reference)
    reference.set_input_size(img_size=size)
    ours.set_input_size(img_size=size)
    assert ours.pretrained_cfg["input_size"] == (3, *_pair(size))
    assert_same_logits(ours, reference, torch.randn(2, 3, *_pair(size)))


def test_swin_window_follows_the_grid_as_timms_and_comes_back():
    ours = vitgraph.build("swin_t", overrides={"depths": [1, 1, 1, 1]})
    ours.set_input_size(img_size=256)
    assert ours.get_submodule("layers.0.blocks.0.attn").relative_position_bias_table.shape == (
        15 * 15,
        3,
    )
    ours.set_input_size(img_size=224)
    assert ours.get_submodule("layers.0.blocks.0.attn").relative_position_bias_table.shape == (
        13 * 13,
        3,
    )


def test_resized_model_keeps_its_mode_identity_and_grad_flags():
    model = vitgraph.build("vit_ti_16", overrides={"depth": 1})
    model.train()
    model.get_parameter("pos_embed").requires_grad_(False)
    same = model
    model.set_input_size(img_size=128)
    assert model is same and model.training
    assert tuple(model.get_parameter("pos_embed").shape) == (1, 65, 192)
    assert not model.get_parameter("pos_embed").requires_grad
    assert model(torch.randn(1, 3, 128, 128)).shape == (1, 1000)


def test_size_the_patch_does_not_divide_is_a_located_spec_error():
    model = vitgraph.build("vit_ti_16", overrides={"depth": 1})
    with pytest.raises(SpecError, match=r"vit\.yaml:\d+:\d+: .*patch 16.*100"):
        model.set_input_size(img_size=100)
    assert model.pretrained_cfg["input_size"] == (3, 224, 224)  # left as it was


def test_another_patch_size_is_refused_by_name():
    model = vitgraph.build("vit_ti_16", overrides={"depth": 1})
    with pytest.raises(ValueError, match=r"patch_size=8.*resample_patch_embed"):
        model.set_input_size(patch_size=8)


def test_a_model_cut_to_its_features_is_refused():
    model = vitgraph.build("vit_ti_16", overrides={"depth": 1})
    model.reset_classifier(0, "")
    with pytest.raises(NotImplementedError, match=r"was cut"):
        model.set_input_size(img_size=128)


def test_window_size_on_a_model_without_windows_is_refused():
    model = vitgraph.build("vit_ti_16", overrides={"depth": 1})
    with pytest.raises(ValueError, match="no windowed attention"):
        model.set_input_size(img_size=128, window_size=4)
