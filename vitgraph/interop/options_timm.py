"""The option audit of the timm classes ``from_timm`` converts (see
``vitgraph.interop.options``). Examples are constructor keyword arguments over a small
base configuration the tests hold (``tests/interop/test_options.py``); a string value
``"@module.Name"`` stands for that object (a layer class, a dtype), ``"@name"`` as a
key builds the registered timm model of that name instead of the base."""

from __future__ import annotations

from vitgraph.interop.options import (
    DYNAMIC_SIZE,
    MODERN,
    Option,
    honoured,
    partly,
    refused,
)

_INIT = "initialisation only: the reference's weights are copied over it"

#: options every timm class takes with the same meaning
_COMMON = {
    "in_chans": honoured("any channel count", {"in_chans": 1}),
    "num_classes": partly(
        "a classifier of any width",
        ({"num_classes": 7},),
        "0 (a headless model)",
        ({"num_classes": 0},),
        issue=DYNAMIC_SIZE,
    ),
    "drop_rate": honoured("the dropout before the classifier", {"drop_rate": 0.25}),
    "drop_path_rate": honoured("the stochastic-depth schedule", {"drop_path_rate": 0.2}),
    "device": honoured("the twin is built on the reference's device", {"device": "cpu"}),
    "dtype": honoured("the twin is built in the reference's dtype", {"dtype": "@torch.float64"}),
}
_DROPS = {
    "pos_drop_rate": honoured("dropout after the position table", {"pos_drop_rate": 0.25}),
    "proj_drop_rate": honoured("dropout after projections and MLPs", {"proj_drop_rate": 0.25}),
    "attn_drop_rate": honoured("dropout of attention weights", {"attn_drop_rate": 0.25}),
}

VISION_TRANSFORMER: dict[str, Option] = {
    **_COMMON,
    **_DROPS,
    "img_size": honoured("any size the patch divides, square or not", {"img_size": (32, 48)}),
    "patch_size": partly(
        "square patches",
        ({"patch_size": 8},),
        "non-square patches",
        ({"patch_size": (16, 8)},),
    ),
    "global_pool": partly(
        "'token', 'avg'",
        ({"global_pool": "avg"}, {"global_pool": "avg", "class_token": False}),
        "'map', 'max', 'avgmax' (#23), 'prr', '' (unpooled tokens, #20)",
        (
            {"global_pool": "map"},
            {"global_pool": "max"},
            {"global_pool": "avgmax"},
            {"global_pool": "prr"},
            {"global_pool": ""},
        ),
        issue=MODERN,
    ),
    "embed_dim": honoured("any width", {"embed_dim": 48, "num_heads": 3}),
    "depth": partly("one block or more", ({"depth": 3},), "0", ({"depth": 0},)),
    "num_heads": honoured("any head count", {"num_heads": 4}),
    "mlp_ratio": honoured(
        "any ratio (the hidden width is carried exactly)",
        {"mlp_ratio": 4.0 / 3.0},
        {"embed_dim": 28, "num_heads": 2, "mlp_ratio": 61 / 28},
    ),
    "qkv_bias": honoured("True, False", {"qkv_bias": False}),
    "qk_norm": refused("True", {"qk_norm": True}, issue=MODERN),
    "scale_attn_norm": refused("True (a norm inside the attention)", {"scale_attn_norm": True}),
    "scale_mlp_norm": refused("True (a norm inside the MLP)", {"scale_mlp_norm": True}),
    "proj_bias": refused("False (bias-free linears)", {"proj_bias": False}, issue=MODERN),
    "init_values": honoured("None, or LayerScale of any init", {"init_values": 0.1}),
    "class_token": honoured("True, False", {"class_token": False, "global_pool": "avg"}),
    "pos_embed": honoured("'learn', 'none', ''", {"pos_embed": "none"}, {"pos_embed": ""}),
    "no_embed_class": honoured("True, False", {"no_embed_class": True}),
    "reg_tokens": refused("> 0 (register tokens)", {"reg_tokens": 2}, issue=MODERN),
    "pre_norm": refused("True (CLIP's norm_pre)", {"pre_norm": True}, issue=MODERN),
    "final_norm": honoured(
        "True, False", {"final_norm": False}, {"final_norm": False, "global_pool": "avg"}
    ),
    "fc_norm": honoured(
        "None, True, False",
        {"fc_norm": True},
        {"fc_norm": False, "global_pool": "avg"},
        {"fc_norm": True, "global_pool": "avg", "pool_include_prefix": True},
    ),
    "pool_include_prefix": honoured(
        "True, False (the class token joins the average)",
        {"pool_include_prefix": True, "global_pool": "avg"},
        {"pool_include_prefix": True, "global_pool": "avg", "no_embed_class": True},
        {"pool_include_prefix": True},
    ),
    "dynamic_img_size": refused("True", {"dynamic_img_size": True}, issue=DYNAMIC_SIZE),
    "dynamic_img_pad": refused("True", {"dynamic_img_pad": True}, issue=DYNAMIC_SIZE),
    "patch_drop_rate": refused("> 0 (patch dropout)", {"patch_drop_rate": 0.25}, issue=MODERN),
    "weight_init": honoured(_INIT, {"weight_init": "jax"}, {"weight_init": "moco"}),
    "fix_init": honoured(_INIT, {"fix_init": True}),
    "embed_layer": partly(
        "PatchEmbed",
        (),
        "other embeddings (hybrid CNN stems: HybridEmbed)",
        ({"@name": "vit_tiny_r_s16_p8_224", "depth": 1, "img_size": 64},),
    ),
    "embed_norm_layer": partly(
        "LayerNorm of any eps",
        ({"embed_norm_layer": "layernorm"},),
        "RMSNorm (#23) and other norms",
        ({"embed_norm_layer": "rmsnorm"}, {"embed_norm_layer": "batchnorm1d"}),
        issue=MODERN,
    ),
    "norm_layer": partly(
        "LayerNorm of any eps",
        ({"norm_layer": "@timm.layers.LayerNorm"},),
        "RMSNorm (#23) and other norms",
        ({"norm_layer": "rmsnorm"},),
        issue=MODERN,
    ),
    "act_layer": partly(
        "GELU (exact or tanh), ReLU, SiLU, Hardswish, Tanh",
        (
            {"act_layer": "gelu_tanh"},
            {"act_layer": "relu"},
            {"act_layer": "silu"},
            {"act_layer": "hard_swish"},
            {"act_layer": "tanh"},
        ),
        "quick_gelu (#23) and other activations",
        ({"act_layer": "quick_gelu"}, {"act_layer": "mish"}),
        issue=MODERN,
    ),
    "block_fn": partly(
        "Block",
        (),
        "parallel and res-post-norm blocks",
        (
            {"block_fn": "@timm.models.vision_transformer.ParallelScalingBlock"},
            {"block_fn": "@timm.models.vision_transformer.ParallelThingsBlock"},
            {"block_fn": "@timm.models.vision_transformer.ResPostBlock"},
        ),
        issue=MODERN,
    ),
    "mlp_layer": partly(
        "Mlp",
        (),
        "gated MLPs (SwiGLU, GluMlp)",
        ({"mlp_layer": "@timm.layers.SwiGLU"}, {"mlp_layer": "@timm.layers.GluMlp"}),
        issue=MODERN,
    ),
    "attn_layer": partly(
        "Attention",
        (),
        "other attention classes (rotary: AttentionRope)",
        ({"attn_layer": "@timm.layers.AttentionRope"},),
        issue=MODERN,
    ),
}

#: VisionTransformerDistilled takes VisionTransformer's arguments; its forward differs
VISION_TRANSFORMER_DISTILLED: dict[str, Option] = {
    **VISION_TRANSFORMER,
    "global_pool": honoured("'token' (timm allows no other)", {"global_pool": "token"}),
    "class_token": honoured("True (timm builds no distilled model without it)", {}),
    "no_embed_class": refused(
        "True (timm's distilled forward fails on its own table)", {"no_embed_class": True}
    ),
    "fc_norm": honoured(
        "None, False; True builds a norm timm never applies (nor does the twin)",
        {"fc_norm": True},
        {"fc_norm": True, "final_norm": False},
    ),
    "pool_include_prefix": honoured(
        "True, False: timm's distilled head never pools", {"pool_include_prefix": True}
    ),
    "final_norm": honoured("True, False", {"final_norm": False}),
}

TABLES: dict[str, dict[str, Option]] = {
    "timm.models.vision_transformer.VisionTransformer": VISION_TRANSFORMER,
    "timm.models.deit.VisionTransformerDistilled": VISION_TRANSFORMER_DISTILLED,
}
