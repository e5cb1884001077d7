"""``vitgraph.create_model``: timm's arguments reach the spec's knobs, and a wrong
argument is one clear error before anything is built."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from vitgraph.model.features import FeatureTaps


def test_timms_arguments_set_the_specs_classes_channels_size_and_rates():
    model = vitgraph.create_model(
        "vit_s_16",
        num_classes=42,
        in_chans=1,
        img_size=64,
        drop_rate=0.1,
        drop_path_rate=0.2,
        depth=2,
    )
    graph = model.vitgraph_graph
    assert graph.args["classes"] == 42
    assert graph.args["image_size"] == 64
    assert graph.args["dropout"] == 0.1
    assert graph.args["drop_path_rate"] == 0.2
    assert graph.input_shape == (1, 64, 64)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 42)


def test_in_chans_reaches_a_spec_without_a_channels_arg_through_its_input():
    model = vitgraph.create_model("swin_t", in_chans=4, img_size=64, window=2, depths=[1, 1, 1, 1])
    assert model.vitgraph_graph.input_shape == (4, 64, 64)
    assert model.patch_embed.proj.weight.shape[1] == 4


def test_num_classes_zero_gives_pooled_features_and_no_pooling_the_tokens():
    pooled = vitgraph.create_model("vit_s_16", num_classes=0, img_size=32, depth=1)
    assert pooled(torch.randn(2, 3, 32, 32)).shape == (2, 384)
    assert pooled.num_classes == 0
    unpooled = vitgraph.create_model(
        "vit_s_16", num_classes=0, global_pool="", img_size=32, depth=1
    )
    assert unpooled(torch.randn(2, 3, 32, 32)).shape == (2, 5, 384)


def test_features_only_gives_the_taps_at_out_indices_as_maps():
    model = vitgraph.create_model(
        "swin_t", features_only=True, out_indices=(1, 3), img_size=64, window=2, depths=[1, 1, 1, 1]
    )
    assert isinstance(model, FeatureTaps)
    assert model.feature_info.channels() == [192, 768]
    assert model.feature_info.reduction() == [8, 32]
    assert [tuple(t.shape) for t in model(torch.randn(1, 3, 64, 64))] == [
        (1, 192, 8, 8),
        (1, 768, 2, 2),
    ]
    assert not any(name.startswith("head") for name, _ in model.named_parameters())


def test_an_unknown_argument_is_one_error_naming_what_is_accepted():
    with pytest.raises(TypeError) as error:
        vitgraph.create_model("vit_s_16", num_clases=10)
    assert str(error.value) == (
        "create_model() got unknown argument(s) num_clases: it takes pretrained, "
        "pretrained_file, pretrained_cfg_overlay, num_classes, in_chans, img_size, drop_rate, "
        "drop_path_rate, features_only, out_indices, global_pool, dynamic_img_size, "
        "dynamic_img_pad, and as spec overrides the "
        "args of vit_s_16 (classes, depth, dim, "
        "drop_path_rate, dropout, heads, image_size, mlp_ratio, patch) or dotted node.param / "
        "input.size / input.channels keys"
    )


def test_a_rate_the_spec_has_no_arg_for_is_refused_by_name():
    with pytest.raises(TypeError, match="swin_t has no arg for drop_rate"):
        vitgraph.create_model("swin_t", drop_rate=0.1)


def test_a_pretrained_file_without_pretrained_or_another_overlay_key_is_refused():
    with pytest.raises(TypeError, match="pretrained_file is only read with pretrained=True"):
        vitgraph.create_model("vit_s_16", pretrained_file="w.pth")
    with pytest.raises(TypeError, match=r"only 'file' is taken, not \['url'\]"):
        vitgraph.create_model("vit_s_16", pretrained=True, pretrained_cfg_overlay={"url": "x"})


def test_another_pooling_is_refused_as_a_graph_edit():
    with pytest.raises(TypeError, match="the pooling is a node of the spec"):
        vitgraph.create_model("vit_s_16", global_pool="avg")


def test_a_dotted_override_reaches_a_node():
    model = vitgraph.create_model("vit_s_16", img_size=32, depth=1, **{"head.classes": 7})
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)


timm = pytest.importorskip("timm")


@pytest.mark.parametrize(
    ("variant", "timm_name", "sizes", "overrides"),
    [
        ("vit_s_16", "vit_small_patch16_224", [(160, 224), (288, 288)], {}),
        ("deit3_s", "deit3_small_patch16_224", [(160, 224)], {}),
        ("dinov2_vit_s_14_reg4", "vit_small_patch14_reg4_dinov2", [(112, 140)], {"num_classes": 0}),
    ],
)
def test_dynamic_img_size_makes_a_shipped_spec_equal_timms_dynamic_model_at_other_sizes(
    variant, timm_name, sizes, overrides
):
    from tests.helpers import assert_same_logits, redraw_

    reference = redraw_(timm.create_model(timm_name, depth=2, dynamic_img_size=True)).eval()
    ours = vitgraph.create_model(variant, depth=2, dynamic_img_size=True, **overrides)
    ours.load_state_dict(vitgraph.from_timm(reference).state_dict())
    assert ours.pretrained_cfg["fixed_input_size"] is False
    for size in sizes:
        assert_same_logits(ours, reference, torch.randn(2, 3, *size))


@pytest.mark.parametrize(
    ("variant", "timm_name", "size"),
    [
        ("swin_t", "swin_tiny_patch4_window7_224", (256, 192)),
        ("swinv2_t_w8", "swinv2_tiny_window8_256", (224, 160)),
    ],
)
def test_dynamic_img_size_makes_swin_equal_timms_dynamic_swin_at_a_size_its_windows_pad(
    variant, timm_name, size
):
    from tests.helpers import assert_same_logits, redraw_

    small = {"depths": (1, 1, 2, 1), "num_heads": (1, 1, 2, 2)}
    reference = redraw_(
        timm.create_model(timm_name, embed_dim=16, dynamic_img_size=True, **small)
    ).eval()
    ours = vitgraph.create_model(
        variant, dim=16, depths=[1, 1, 2, 1], heads=[1, 1, 2, 2], dynamic_img_size=True
    )
    ours.load_state_dict(vitgraph.from_timm(reference).state_dict())
    assert ours.pretrained_cfg["fixed_input_size"] is False
    assert_same_logits(ours, reference, torch.randn(2, 3, *size))


def test_dynamic_img_pad_pads_to_a_patch_multiple_as_timms_at_a_size_the_patch_does_not_divide():
    from tests.helpers import assert_same_logits, redraw_

    options = {"dynamic_img_size": True, "dynamic_img_pad": True}
    reference = redraw_(timm.create_model("vit_small_patch16_224", depth=2, **options)).eval()
    ours = vitgraph.create_model("vit_s_16", depth=2, **options)
    ours.load_state_dict(vitgraph.from_timm(reference).state_dict())
    assert_same_logits(ours, reference, torch.randn(2, 3, 150, 230))


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("levit_128s", "levit_128s has 0 (none)"),
        ("crossvit_9", "crossvit_9 has 2 (pos_embed_small, pos_embed_large)"),
        (
            "cait_xxs24",
            "'blocks.0.attn' is sized for the declared 224x224 input and fails at 240x224",
        ),
        ("pit_ti", "the 27x27 grid is not a patch grid of the 224x224 image"),
    ],
)
def test_dynamic_img_size_is_refused_by_name_where_one_resized_table_is_not_the_model(
    variant, message
):
    overrides = {"depth": 1} if variant == "cait_xxs24" else {}
    with pytest.raises(vitgraph.SpecError, match=rf"{variant}: dynamic_img_size=True") as info:
        vitgraph.create_model(variant, dynamic_img_size=True, **overrides)
    assert message in str(info.value)


def test_dynamic_img_pad_alone_pads_the_embedding_and_keeps_the_table_fixed():
    model = vitgraph.create_model("vit_s_16", depth=1, dynamic_img_pad=True)
    graph = model.vitgraph_graph
    assert graph.node("patch_embed").params.dynamic_pad is True
    assert graph.node("pos_embed").params.dynamic is False
    assert model.pretrained_cfg["fixed_input_size"] is True
