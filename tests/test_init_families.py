"""Every family is initialised as its reference initialises it (issue #10).

A fresh model and the reference's fresh twin at the same small config are compared per
parameter *role* (Linear weights and biases, the classifier, convs, LayerNorms,
BatchNorms, tokens, position tables, relative-position tables, LayerScale): the same
element count, the same constants exactly (norm weights 1, zero biases, BoTNet's
zeroed last BatchNorms) and, where random, the same mean and std within a few sampling
errors — tight enough to tell TN(0.02) from PyTorch's kaiming-uniform default (≈3x in
std) or from timm's conv fan-out normal.

Families whose reference is not installed (T2T-ViT, DeepViT, CeiT, CPVT, VT) are
compared with a copy of our model re-drawn by the reference's rule, transcribed here from
its code (every layer at PyTorch's default, then the reference's explicit draws), not
through ``vitgraph.init``.
"""

from __future__ import annotations

import copy
import importlib
import re
import warnings
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from torch import nn

import vitgraph

CLASSES = 13  # the head is the Linear with this many outputs (no other layer has 13)
Pair = tuple[nn.Module, nn.Module]


def ours(variant: str, **overrides) -> nn.Module:
    return vitgraph.load(variant, overrides={"classes": CLASSES, **overrides}).build()


# -- roles ------------------------------------------------------------------------------


def role_of(module: nn.Module, leaf: str, name: str, param: nn.Parameter) -> str:
    if not param.requires_grad:
        return "fixed"  # frozen tables (sinusoid positions, Performer features)
    if isinstance(module, nn.Linear):
        return ("head." if module.out_features == CLASSES else "linear.") + leaf
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        return f"conv.{leaf}"
    if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        return f"bn.{leaf}"
    if isinstance(module, nn.LayerNorm | nn.GroupNorm):
        return f"norm.{leaf}"
    name = name.lower()
    for role, pattern in (
        ("token", r"cls|dist_token|class_emb"),
        ("relative", r"relative|attention_biases|_rel$"),
        ("position", r"pos"),
        ("layer_scale", r"gamma|scale"),
    ):
        if re.search(pattern, name):
            return role
    return "other:" + re.sub(r"\.\d+\.", ".*.", name)


def role_values(model: nn.Module) -> dict[str, torch.Tensor]:
    groups: dict[str, list[torch.Tensor]] = {}
    for prefix, module in model.named_modules():
        for leaf, param in module.named_parameters(recurse=False):
            role = role_of(module, leaf, f"{prefix}.{leaf}" if prefix else leaf, param)
            groups.setdefault(role, []).append(param.detach().flatten())
    return {role: torch.cat(values).double() for role, values in groups.items()}


def key_values(model: nn.Module) -> dict[str, torch.Tensor]:
    """Per state_dict key with the layer index folded (for two models of one structure)."""
    groups: dict[str, list[torch.Tensor]] = {}
    for name, param in model.named_parameters():
        groups.setdefault(re.sub(r"\.\d+\.", ".*.", name), []).append(param.detach().flatten())
    return {key: torch.cat(values).double() for key, values in groups.items()}


def assert_same_statistics(
    model: nn.Module,
    reference: nn.Module,
    groups: Callable[[nn.Module], dict[str, torch.Tensor]] = role_values,
) -> None:
    got, want = groups(model), groups(reference)
    assert set(got) == set(want)
    for role, expected in want.items():
        actual = got[role]
        assert actual.numel() == expected.numel(), role
        if expected.std() == 0:  # a constant: norm weights, zero biases
            assert actual.min() == actual.max() == expected[0], role
            continue
        if ((expected == 0) | (expected == 1)).all():  # BoTNet's zeroed last BNs, LeViT's
            assert ((actual == 0) | (actual == 1)).all(), role
            assert torch.count_nonzero(actual) == torch.count_nonzero(expected), role
            continue
        n, std = expected.numel(), expected.std().item()
        # sampling error of a std estimate ~ std / sqrt(2n): allow 6 of those, at least 10%
        assert abs(actual.std().item() - std) <= max(0.1, 6 / (2 * n) ** 0.5) * std, (
            role,
            actual.std().item(),
            std,
        )
        assert abs(actual.mean().item() - expected.mean().item()) <= 6 * std / n**0.5, (
            role,
            actual.mean().item(),
            expected.mean().item(),
        )


# -- references with a twin -------------------------------------------------------------


def timm_model(name: str, **kwargs) -> nn.Module:
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False, num_classes=CLASSES, **kwargs)


def hf(model: str, config: str, **kwargs) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    return getattr(transformers, model)(getattr(transformers, config)(num_labels=CLASSES, **kwargs))


def cct() -> nn.Module:
    module = pytest.importorskip("vit_pytorch.cct")
    return module._cct(
        num_layers=2,
        num_heads=4,
        mlp_ratio=2,
        embedding_dim=256,
        img_size=32,
        kernel_size=3,
        n_conv_layers=1,
        num_classes=CLASSES,
        pooling_kernel_size=3,
        pooling_stride=2,
        pooling_padding=1,
        positional_embedding="learnable",
    )


def botnet() -> nn.Module:
    """timm's botnet26t at a quarter of its widths (its 4-head attention at head_dim 16, 32)."""
    byobnet = pytest.importorskip("timm.models.byobnet")
    cfg = importlib.import_module("timm.models.byoanet").model_cfgs["botnet26t"]
    blocks = tuple(
        tuple(replace(b, c=b.c // 4) for b in stage)
        if isinstance(stage, tuple)
        else replace(stage, c=stage.c // 4)
        for stage in cfg.blocks
    )
    return byobnet.ByobNet(replace(cfg, blocks=blocks), num_classes=CLASSES, img_size=128)


def lvvit() -> nn.Module:
    module = pytest.importorskip("tlt.models.lvvit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return module.LV_ViT(
            embed_dim=240,
            depth=2,
            num_heads=4,
            mlp_ratio=3.0,
            p_emb="4_2",
            skip_lam=2.0,
            return_dense=True,
            mix_token=False,
            num_classes=CLASSES,
        )


TWINS: dict[str, Callable[[], Pair]] = {
    # the modern ViTs (#23): LayerScale, registers, the MAP head's latent, CLIP's pre-norm
    "deit3": lambda: (
        ours("deit3_s", depth=2, image_size=64),
        timm_model("deit3_small_patch16_224", depth=2, img_size=64),
    ),
    "dinov2": lambda: (
        ours("dinov2_vit_s_14_reg4", depth=2, image_size=56),
        timm_model("vit_small_patch14_reg4_dinov2", depth=2, img_size=56),
    ),
    "siglip": lambda: (
        ours("siglip_b_16", depth=2, image_size=64),
        timm_model("vit_base_patch16_siglip_224", depth=2, img_size=64),
    ),
    "clip_vit": lambda: (
        ours("clip_vit_b_32", depth=2, image_size=64),
        timm_model("vit_base_patch32_clip_quickgelu_224", depth=2, img_size=64),
    ),
    "cait": lambda: (ours("cait_xxs24", depth=2), timm_model("cait_xxs24_224", depth=2)),
    "pit": lambda: (
        ours("pit_ti", depths=[1, 1, 1], distilled=True),
        timm_model("pit_ti_distilled_224", depth=[1, 1, 1]),
    ),
    "twins_svt": lambda: (
        ours("twins_svt_s", depths=[2, 2, 2, 2], dims=[32, 64, 128, 256]),
        timm_model("twins_svt_small", depths=(2, 2, 2, 2), embed_dims=(32, 64, 128, 256)),
    ),
    "twins_pcpvt": lambda: (
        ours("twins_pcpvt_s", depths=[2, 2, 2, 2], dims=[16, 32, 80, 128]),
        timm_model("twins_pcpvt_small", depths=(2, 2, 2, 2), embed_dims=(16, 32, 80, 128)),
    ),
    "swin": lambda: (
        ours("swin_t", dim=48, depths=[1, 2, 1, 1]),
        timm_model("swin_tiny_patch4_window7_224", embed_dim=48, depths=(1, 2, 1, 1)),
    ),
    "tnt": lambda: (
        ours("tnt_s", depth=2, dim=192),
        timm_model("tnt_s_patch16_224", depth=2, embed_dim=192),
    ),
    "crossvit": lambda: (
        ours("crossvit_ti", encoders=2, depth_large=1),
        timm_model("crossvit_tiny_240", depth=[[1, 1, 0]] * 2),
    ),
    "levit": lambda: (
        ours("levit_128s", depths=[1, 1, 1]),
        timm_model("levit_128s", depth=(1, 1, 1)),
    ),
    "botnet": lambda: (ours("botnet26t_256", widths=[64, 128, 256, 512], image_size=128), botnet()),
    "pvt": lambda: (
        ours("pvt_tiny", depths=[1, 1, 1, 1], dims=[32, 64, 160, 256]),
        hf(
            "PvtForImageClassification",
            "PvtConfig",
            depths=[1, 1, 1, 1],
            hidden_sizes=[32, 64, 160, 256],
        ),
    ),
    # HF indexes its per-stage drop-path list by the stage: depth[i] must exceed i
    "cvt": lambda: (
        ours("cvt_13", depths=[1, 2, 3], dims=[16, 32, 48], heads=[1, 2, 3]),
        hf(
            "CvtForImageClassification",
            "CvtConfig",
            depth=[1, 2, 3],
            embed_dim=[16, 32, 48],
            num_heads=[1, 2, 3],
        ),
    ),
    "cct": lambda: (ours("cct_7_3x1", depth=2), cct()),
    "lvvit": lambda: (ours("lv_vit_t", dim=240, depth=2, heads=4), lvvit()),
}


# -- references transcribed from code that is not installed -----------------------------


def pytorch_defaults(model: nn.Module) -> nn.Module:
    """A copy with every layer as its constructor draws it."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(
            module,
            nn.Linear
            | nn.Conv1d
            | nn.Conv2d
            | nn.BatchNorm1d
            | nn.BatchNorm2d
            | nn.LayerNorm
            | nn.GroupNorm,
        ):
            module.reset_parameters()
    return model


def tables(model: nn.Module, role: str) -> list[nn.Parameter]:
    return [
        param
        for prefix, module in model.named_modules()
        for leaf, param in module.named_parameters(recurse=False)
        if role_of(module, leaf, f"{prefix}.{leaf}", param) == role
    ]


def timm_2021_vit_rule(model: nn.Module, *, token_std: float = 0.02) -> nn.Module:
    """The official T2T-ViT, DeepViT and CeiT ``__init__`` (all copy timm 0.3's ViT):
    ``trunc_normal_(pos_embed, .02)``, ``trunc_normal_(cls_token, .02)``, then
    ``apply(_init_weights)``: Linear ~ TN(0.02) with zero bias, LayerNorm 1 and 0.
    CPVT is DeiT's current timm rule: the same with the class token ~ N(1e-6)."""
    model = pytorch_defaults(model)
    for table in tables(model, "position"):
        nn.init.trunc_normal_(table, std=0.02)
    for token in tables(model, "token"):
        nn.init.normal_(token, std=token_std)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def ceit_rule(model: nn.Module) -> nn.Module:
    """The official CeiT: timm 0.3's ViT rule, but its layer position table
    (``pos_layer_embed``, torch.zeros) is never re-drawn."""
    model = timm_2021_vit_rule(model)
    nn.init.zeros_(model.get_parameter("pos_layer_embed"))
    return model


def torchvision_resnet_rule(model: nn.Module) -> nn.Module:
    """torchvision's ``ResNet.__init__``: Conv2d ~ kaiming_normal_(fan_out, relu),
    BatchNorm/GroupNorm 1 and 0, the rest (Linear, Conv1d) at PyTorch's defaults."""
    model = pytorch_defaults(model)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


def by_rule(model: nn.Module, rule: Callable[[nn.Module], nn.Module]) -> Pair:
    return model, rule(model)


RULES: dict[str, Callable[[], Pair]] = {
    "t2t_vit": lambda: by_rule(ours("t2t_vit_7", depth=2), timm_2021_vit_rule),
    "deepvit": lambda: by_rule(
        ours("deepvit_s", dim=96, depth=4, reattention_layers=2), timm_2021_vit_rule
    ),
    "ceit": lambda: by_rule(ours("ceit_t", image_size=32, dim=96), ceit_rule),
    "cpvt": lambda: by_rule(
        ours("cpvt_ti", depth=2), lambda m: timm_2021_vit_rule(m, token_std=1e-6)
    ),
    "vt_r18": lambda: by_rule(
        ours("vt_r18", depths=[1, 1, 1], token_dim=256), torchvision_resnet_rule
    ),
    "vt_r50": lambda: by_rule(
        ours("vt_r50", depths=[1, 1, 1], token_dim=256), torchvision_resnet_rule
    ),
}


@pytest.mark.parametrize("family", sorted({**TWINS, **RULES}))
def test_a_fresh_model_has_its_references_init_statistics_per_parameter_role(family):
    torch.manual_seed(0)
    model, reference = {**TWINS, **RULES}[family]()
    assert_same_statistics(model, reference)
    if family in RULES:  # one structure: also layer by layer
        assert_same_statistics(model, reference, key_values)


# -- declarations -----------------------------------------------------------------------


def test_every_shipped_kind_that_owns_parameters_declares_its_init_scheme():
    from vitgraph.spec.catalog import registry

    undeclared = sorted(
        kind
        for kind, cls in registry().primitives.items()
        if cls.weight_init is None and _owns_parameters(kind)
    )
    assert undeclared == []


PARAMETER_FREE = {
    "add",
    "detr_sine_pos",
    "feature_mask",
    "feature_pyramid",
    "fold_patches",
    "stack_layers",
    "to_tokens",
    "zeros_like",
    "block_shift",
    "class_first",
    "timing_signal_2d",
    "add_prefix",
    "average",
    "avgmax_pool",
    "drop_path",
    "dropout",
    "global_avg_pool",
    "identity",
    "last_token",
    "max_pool",
    "mean_pool",
    "merge_prefix",
    "patch_dropout",
    "resize_image",
    "sincos2d_pos",
    "sinusoid_pos",
    "space_to_depth",
    "stack_cls",
    "take_cls",
    "to_image",
    "unfold_patches",
}
TENSORS = {
    "cls_token",
    "dist_token",
    "reg_token",
    "learned_pos",
}  # drawn by build from their fields


def _owns_parameters(kind: str) -> bool:
    return kind not in PARAMETER_FREE | TENSORS


def test_twins_convs_are_fan_out_normal_and_botnet_zeroes_each_last_batchnorm():
    model = ours("twins_pcpvt_s", depths=[2, 2, 2, 2], image_size=64)
    conv = model.get_submodule("stage1.pos_block").proj[0]  # PEG's depthwise 3x3
    fan_out = 3 * 3 * conv.out_channels // conv.groups
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.15)
    assert torch.count_nonzero(conv.bias) == 0

    model = ours("botnet26t_256", widths=[64, 128, 256, 512], image_size=64)
    last = [m for name, m in model.named_modules() if name.endswith("conv3_1x1")]
    assert last and all(torch.count_nonzero(m.bn.weight) == 0 for m in last)


def test_a_spec_init_entry_overrides_the_kinds_declaration():
    from vitgraph.init import scheme_of

    pit = vitgraph.load("pit_ti", overrides={"depths": [1, 1, 1]})
    twins = vitgraph.load("twins_pcpvt_s", overrides={"depths": [2, 2, 2, 2]})
    assert pit.source.document.init["mhsa"] == "keep"
    assert scheme_of(pit.node("transformers.0.blocks.0.attn").params) == "trunc_normal_linear"
    assert (
        scheme_of(pit.node("transformers.0.blocks.0.attn").params, pit.source.document.init)
        == "keep"
    )
    assert (
        scheme_of(twins.node("stage1.pos_block").params, twins.source.document.init)
        == "conv_fan_out"
    )


def test_simplevit_draws_big_vision_init_by_layer():
    """big_vision models/vit.py: flax lecun_normal (std sqrt(1/fan_in)) for the patch conv
    and the pre-logits Dense, xavier-uniform (std sqrt(2/(fan_in+fan_out))) for the separate
    (D, D) q, k, v kernels, the output projection and the MLP, MLP biases ~ N(1e-6), the
    rest zero, the head included."""
    model = vitgraph.load("simplevit_s_16", overrides={"depth": 1}).build()
    dim = 384
    stds = {
        "patch_embed.proj.weight": (3 * 16 * 16) ** -0.5,
        "blocks.0.attn.qkv.weight": (2 / (dim + dim)) ** 0.5,  # not 2/(dim + 3 dim)
        "blocks.0.attn.proj.weight": (2 / (dim + dim)) ** 0.5,
        "blocks.0.mlp.fc1.weight": (2 / (dim + 4 * dim)) ** 0.5,
        "blocks.0.mlp.fc2.weight": (2 / (4 * dim + dim)) ** 0.5,
        "blocks.0.mlp.fc1.bias": 1e-6,
        "blocks.0.mlp.fc2.bias": 1e-6,
        "pre_logits.fc.weight": dim**-0.5,
    }
    params = dict(model.named_parameters())
    for name, std in stds.items():
        assert params[name].std().item() == pytest.approx(std, rel=0.05), name
    for name in (
        "patch_embed.proj.bias",
        "blocks.0.attn.qkv.bias",
        "blocks.0.attn.proj.bias",
        "pre_logits.fc.bias",
        "head.weight",
        "head.bias",
    ):
        assert torch.count_nonzero(params[name]) == 0, name


FULL: dict[str, Callable[[], Pair]] = {  # the smallest variant of each family, full size
    "cait_xxs24": lambda: (ours("cait_xxs24"), timm_model("cait_xxs24_224")),
    "pit_ti": lambda: (ours("pit_ti"), timm_model("pit_ti_224")),
    "twins_svt_s": lambda: (ours("twins_svt_s"), timm_model("twins_svt_small")),
    "twins_pcpvt_s": lambda: (ours("twins_pcpvt_s"), timm_model("twins_pcpvt_small")),
    "swin_t": lambda: (ours("swin_t"), timm_model("swin_tiny_patch4_window7_224")),
    "tnt_s": lambda: (ours("tnt_s"), timm_model("tnt_s_patch16_224")),
    "crossvit_9": lambda: (ours("crossvit_9"), timm_model("crossvit_9_240")),
    "levit_128s": lambda: (ours("levit_128s"), timm_model("levit_128s")),
    "botnet26t_256": lambda: (ours("botnet26t_256"), timm_model("botnet26t_256")),
    "pvt_tiny": lambda: (ours("pvt_tiny"), hf("PvtForImageClassification", "PvtConfig")),
    "cvt_13": lambda: (ours("cvt_13"), hf("CvtForImageClassification", "CvtConfig")),
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(FULL))
def test_a_full_size_model_has_its_references_init_statistics(variant):
    torch.manual_seed(0)
    assert_same_statistics(*FULL[variant]())
