"""The cases issue #22 found converting silently wrong or crashing, each now equal to its
reference (weights re-drawn; eval and train logits, gradients) or refused by a SpecError
naming the option and the model."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import redraw_
from tests.interop.parity import compare, hf_logits, hf_state_map, timm_state_map
from vitgraph import SpecError

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _equal_to_timm(reference: torch.nn.Module) -> list[str]:
    reference = redraw_(reference).eval()
    ours = vitgraph.from_timm(reference)
    x = torch.randn(2, *ours.pretrained_cfg["input_size"])
    return compare(ours, reference, timm_state_map(reference), x)


def test_vit_average_with_pool_include_prefix_takes_the_class_token_in_as_timm_does():
    reference = timm.create_model(
        "vit_tiny_patch16_224",
        depth=2,
        img_size=32,
        global_pool="avg",
        pool_include_prefix=True,
        num_classes=10,
    )
    assert _equal_to_timm(reference) == []


def test_distilled_deit_with_fc_norm_skips_the_norm_timm_builds_but_never_applies():
    reference = timm.create_model(
        "deit_tiny_distilled_patch16_224", depth=2, img_size=32, fc_norm=True, num_classes=10
    )
    assert isinstance(reference.norm, torch.nn.Identity)  # fc_norm=True moves it to fc_norm
    assert _equal_to_timm(reference) == []
    ours = vitgraph.from_timm(reference)
    assert not any(k.startswith("fc_norm") for k in ours.state_dict())


def test_tiered_stem_without_its_max_pool_strides_its_last_conv_as_timm_does():
    # resnet32ts: a tiered 3-conv stem with stem_pool='' (timm strides conv1 and conv3)
    reference = timm.create_model("resnet32ts", img_size=64, drop_path_rate=0.0)
    assert reference.stem.conv3.conv.stride == (2, 2)
    assert _equal_to_timm(reference) == []


@pytest.mark.parametrize(
    ("name", "option"),
    [("resnet51q", "stem_type='quad2'"), ("regnetz_d8_evos", "norm_layer=EvoNorm2dS0a")],
)
def test_byobnet_models_that_crashed_are_refused_by_name(name, option):
    with torch.device("meta"):
        reference = timm.create_model(name)
    with pytest.raises(SpecError, match=f"{name}: timm option {option}"):
        vitgraph.from_timm(reference)


def _hf(config_cls: str, model_cls: str, **config) -> torch.nn.Module:
    config = getattr(transformers, config_cls)(**config)
    return redraw_(getattr(transformers, model_cls)(config)).eval()


def _equal_to_hf(reference: torch.nn.Module) -> list[str]:
    ours = vitgraph.from_hf(reference)
    x = torch.randn(2, *ours.pretrained_cfg["input_size"])
    return compare(ours, reference, hf_state_map(reference), x, logits=hf_logits)


PVT = dict(
    image_size=64,
    hidden_sizes=[8, 16, 24, 32],
    num_attention_heads=[1, 2, 2, 4],
    depths=[1, 1, 1, 1],
    sequence_reduction_ratios=[4, 2, 1, 1],
    mlp_ratios=[2, 2, 2, 2],
    num_labels=10,
)


@pytest.mark.parametrize("change", [{"qkv_bias": False}, {"num_channels": 1}])
def test_hf_pvt_without_qkv_bias_or_with_one_channel_gives_hf_logits(change):
    reference = _hf("PvtConfig", "PvtForImageClassification", **PVT, **change)
    assert _equal_to_hf(reference) == []


CVT = dict(embed_dim=[16, 32, 48], num_heads=[1, 2, 3], depth=[1, 2, 3], num_labels=10)


def test_hf_cvt_converts_through_from_hf_to_hf_logits():
    reference = _hf("CvtConfig", "CvtForImageClassification", **CVT, drop_path_rate=[0.0] * 3)
    assert _equal_to_hf(reference) == []


def test_hf_cvt_with_drop_path_converts_once_its_drop_paths_are_zeroed():
    reference = _hf("CvtConfig", "CvtForImageClassification", **CVT)  # HF's default 0.1
    with pytest.raises(SpecError, match=r"drop_path_rate=\[0.0, 0.0, 0.1\]"):
        vitgraph.from_hf(reference)
    for module in reference.modules():
        if type(module).__name__ == "CvtDropPath":
            module.drop_prob = 0.0
    assert _equal_to_hf(reference) == []


def test_hf_cvt_key_value_stride_and_kernel_convert_to_hf_logits():
    # the issue's case: a stride_kv the tests' transplant accepted and computed wrongly
    reference = _hf(
        "CvtConfig",
        "CvtForImageClassification",
        **CVT,
        drop_path_rate=[0.0] * 3,
        stride_kv=[1, 1, 1],
        kernel_qkv=[3, 5, 3],
        padding_q=[1, 2, 1],
        padding_kv=[1, 2, 1],
    )
    assert _equal_to_hf(reference) == []


def test_hf_cvt_padding_other_than_half_the_kernel_is_refused_by_name():
    reference = _hf(
        "CvtConfig",
        "CvtForImageClassification",
        **CVT,
        drop_path_rate=[0.0] * 3,
        padding_kv=[1, 0, 1],
    )
    with pytest.raises(SpecError, match=r"CvtForImageClassification: .*padding_kv=\[1, 0, 1\]"):
        vitgraph.from_hf(reference)
