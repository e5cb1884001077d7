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

INIT = "initialisation only: the reference's weights are copied over it"

#: options every timm class takes with the same meaning
COMMON = {
    "in_chans": honoured("any channel count", {"in_chans": 1}),
    "num_classes": honoured(
        "a classifier of any width; 0 (a headless model: the twin is reset to 0 classes)",
        {"num_classes": 7},
        {"num_classes": 0},
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
    **COMMON,
    **_DROPS,
    "img_size": honoured("any size the patch divides, square or not", {"img_size": (32, 48)}),
    "patch_size": partly(
        "square patches",
        ({"patch_size": 8},),
        "non-square patches",
        ({"patch_size": (16, 8)},),
    ),
    "global_pool": partly(
        "'token', 'avg', 'max', 'avgmax', 'map' (SigLIP's attention pooling)",
        (
            {"global_pool": "avg"},
            {"global_pool": "avg", "class_token": False},
            {"global_pool": "max"},
            {"global_pool": "avgmax", "reg_tokens": 2},
            {"global_pool": "max", "pool_include_prefix": True},
            {"global_pool": "map"},
            {"global_pool": "map", "class_token": False, "reg_tokens": 1},
            {"global_pool": "map", "pool_include_prefix": True, "norm_layer": "rmsnorm"},
            {"global_pool": "", "num_classes": 0},
        ),
        "'prr' (attention pooling of a later timm), '' with a classifier (per-token "
        "logits); '' with num_classes=0 (unpooled tokens) is honoured",
        ({"global_pool": "prr"}, {"global_pool": ""}),
        issue=DYNAMIC_SIZE,
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
    "qk_norm": honoured(
        "True (a LayerNorm or RMSNorm per head, ViT-22B §2)",
        {"qk_norm": True},
        {"qk_norm": True, "norm_layer": "rmsnorm"},
    ),
    "scale_attn_norm": refused("True (a norm inside the attention)", {"scale_attn_norm": True}),
    "scale_mlp_norm": refused("True (a norm inside the MLP)", {"scale_mlp_norm": True}),
    "proj_bias": honoured(
        "True, False (bias-free projections and MLPs)",
        {"proj_bias": False},
        {"proj_bias": False, "qkv_bias": False, "mlp_layer": "@timm.layers.SwiGLU"},
    ),
    "init_values": honoured("None, or LayerScale of any init", {"init_values": 0.1}),
    "class_token": honoured("True, False", {"class_token": False, "global_pool": "avg"}),
    "pos_embed": honoured("'learn', 'none', ''", {"pos_embed": "none"}, {"pos_embed": ""}),
    "no_embed_class": honoured("True, False", {"no_embed_class": True}),
    "reg_tokens": honoured(
        "any count (register tokens, Darcet et al. 2023)",
        {"reg_tokens": 2},
        {"reg_tokens": 4, "no_embed_class": True},
        {"reg_tokens": 1, "class_token": False, "global_pool": "avg"},
    ),
    "pre_norm": honoured("True, False (CLIP's norm_pre)", {"pre_norm": True}),
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
    "dynamic_img_size": honoured(
        "True, False (learned_pos dynamic: the table resized to each input's grid)",
        {"dynamic_img_size": True},
    ),
    "dynamic_img_pad": honoured(
        "True, False (patch_embed dynamic_pad: the image padded to a patch multiple)",
        {"dynamic_img_pad": True, "dynamic_img_size": True},
        {"dynamic_img_pad": True},
    ),
    "patch_drop_rate": honoured(
        "any rate (patch dropout in training, drawn as timm draws it)",
        {"patch_drop_rate": 0.25},
        {"patch_drop_rate": 0.5, "reg_tokens": 2, "global_pool": "avg"},
    ),
    "weight_init": honoured(INIT, {"weight_init": "jax"}, {"weight_init": "moco"}),
    "fix_init": honoured(INIT, {"fix_init": True}),
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
        "LayerNorm, RMSNorm (timm's and torch's), of any eps",
        (
            {"norm_layer": "@timm.layers.LayerNorm"},
            {"norm_layer": "rmsnorm"},
            {"norm_layer": "@timm.layers.RmsNorm", "pre_norm": True, "fc_norm": True},
        ),
        "other norms, torch's RMSNorm with eps=None (the dtype's epsilon)",
        ({"norm_layer": "groupnorm1"}, {"norm_layer": "@torch.nn.RMSNorm"}),
    ),
    "act_layer": partly(
        "GELU (exact or tanh), QuickGELU, ReLU, SiLU, Hardswish, Tanh",
        (
            {"act_layer": "gelu_tanh"},
            {"act_layer": "quick_gelu"},
            {"act_layer": "relu"},
            {"act_layer": "silu"},
            {"act_layer": "hard_swish"},
            {"act_layer": "tanh"},
        ),
        "other activations (Mish, ...)",
        ({"act_layer": "mish"},),
    ),
    "block_fn": partly(
        "Block; ParallelThingsBlock with two branches (Touvron et al. 2022 §3: parallel_layer)",
        (
            {"block_fn": "@timm.models.vision_transformer.ParallelThingsBlock"},
            {
                "block_fn": "@timm.models.vision_transformer.ParallelThingsBlock",
                "init_values": 0.1,
                "qk_norm": True,
                "drop_path_rate": 0.2,
                "mlp_layer": "@timm.layers.SwiGLU",
            },
        ),
        "the fused ParallelScalingBlock, the res-post-norm ResPostBlock",
        (
            {"block_fn": "@timm.models.vision_transformer.ParallelScalingBlock"},
            {"block_fn": "@timm.models.vision_transformer.ResPostBlock"},
        ),
        issue=MODERN,
    ),
    "mlp_layer": partly(
        "Mlp, and the gated SwiGLU, SwiGLUPacked, GluMlp (Shazeer 2020)",
        (
            {"mlp_layer": "@timm.layers.SwiGLU"},
            {"mlp_layer": "@timm.layers.SwiGLUPacked", "act_layer": "silu"},
            {"mlp_layer": "@timm.layers.GluMlp"},
            {"mlp_layer": "@timm.layers.GluMlp", "act_layer": "gelu_tanh"},
        ),
        "other MLPs (GatedMlp, ...)",
        ({"mlp_layer": "@timm.layers.GatedMlp"},),
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
    "reg_tokens": refused(
        "> 0 (timm's distilled forward never adds the registers it builds)", {"reg_tokens": 2}
    ),
    "patch_drop_rate": refused(
        "> 0 (timm's PatchDropout keeps one prefix token: it may drop the distillation token)",
        {"patch_drop_rate": 0.25},
    ),
}

_UNPOOLED = "'' (unpooled token outputs)"
_SQUARE_PATCH = partly(
    "square patches", ({"patch_size": 8},), "non-square", ({"patch_size": (16, 8)},)
)

CAIT: dict[str, Option] = {
    **COMMON,
    **_DROPS,
    "img_size": honoured("any size the patch divides, square or not", {"img_size": (32, 48)}),
    "patch_size": _SQUARE_PATCH,
    "global_pool": partly(
        "'token', 'avg'",
        ({"global_pool": "avg"},),
        _UNPOOLED,
        ({"global_pool": ""},),
        issue=DYNAMIC_SIZE,
    ),
    "embed_dim": honoured("any width", {"embed_dim": 48, "num_heads": 3}),
    "depth": partly("one layer or more", ({"depth": 3},), "0", ({"depth": 0},)),
    "num_heads": honoured("any head count", {"num_heads": 4}),
    "mlp_ratio": honoured("any ratio", {"mlp_ratio": 61 / 32}),
    "qkv_bias": honoured("True, False", {"qkv_bias": False}),
    "block_layers": partly(
        "LayerScaleBlock",
        (),
        "other classes",
        ({"block_layers": "@tests.interop.variants.OtherLayerScaleBlock"},),
    ),
    "block_layers_token": partly(
        "LayerScaleBlockClassAttn",
        (),
        "other classes",
        ({"block_layers_token": "@tests.interop.variants.OtherLayerScaleBlockClassAttn"},),
    ),
    "patch_layer": partly(
        "PatchEmbed",
        (),
        "other classes",
        ({"patch_layer": "@tests.interop.variants.OtherPatchEmbed"},),
    ),
    "norm_layer": partly(
        "LayerNorm of any eps",
        ({"norm_layer": "@torch.nn.LayerNorm"},),
        "RMSNorm (#23) and other norms",
        ({"norm_layer": "@timm.layers.RmsNorm"},),
        issue=MODERN,
    ),
    "act_layer": partly(
        "GELU (exact or tanh), QuickGELU, ReLU, SiLU, Hardswish, Tanh",
        (
            {"act_layer": "@torch.nn.ReLU"},
            {"act_layer": "@timm.layers.GELUTanh"},
            {"act_layer": "@timm.layers.QuickGELU"},
        ),
        "others (Mish, ...)",
        ({"act_layer": "@timm.layers.Mish"},),
    ),
    "attn_block": partly(
        "TalkingHeadAttn",
        (),
        "other attention (timm's plain Attention)",
        ({"attn_block": "@timm.layers.Attention"},),
    ),
    "mlp_block": partly(
        "Mlp", (), "gated MLPs (#23)", ({"mlp_block": "@timm.layers.GluMlp"},), issue=MODERN
    ),
    "init_values": honoured("LayerScale of any init", {"init_values": 0.5}),
    "attn_block_token_only": partly(
        "ClassAttn",
        (),
        "other attention",
        ({"attn_block_token_only": "@tests.interop.variants.OtherTalkingHeadAttn"},),
    ),
    "mlp_block_token_only": partly(
        "Mlp",
        (),
        "gated MLPs (#23)",
        ({"mlp_block_token_only": "@timm.layers.GluMlp"},),
        issue=MODERN,
    ),
    "depth_token_only": partly(
        "one class-attention layer or more",
        ({"depth_token_only": 2},),
        "0 (no class-attention stage)",
        ({"depth_token_only": 0},),
    ),
    "mlp_ratio_token_only": honoured("any ratio", {"mlp_ratio_token_only": 2.0}),
}

TWINS: dict[str, Option] = {
    **COMMON,
    **_DROPS,
    "pos_drop_rate": honoured(
        "dropout after each stage's patch embedding", {"pos_drop_rate": 0.25}
    ),
    "img_size": partly(
        "sizes whose stage grids the windows divide",
        ({"img_size": 128},),
        "other sizes (timm pads the windows)",
        ({"img_size": 96},),
        issue=DYNAMIC_SIZE,
    ),
    "patch_size": honoured(
        "an int (timm's Twins fails on a tuple)", {"patch_size": 2, "img_size": 32}
    ),
    "global_pool": partly(
        "'avg'", ({"global_pool": "avg"},), _UNPOOLED, ({"global_pool": ""},), issue=DYNAMIC_SIZE
    ),
    "embed_dims": honoured("any widths", {"embed_dims": (8, 16, 24, 32)}),
    "num_heads": honoured("any head counts", {"num_heads": (2, 2, 4, 4)}),
    "mlp_ratios": honoured("any ratios", {"mlp_ratios": (4, 3, 61 / 48, 2)}),
    "depths": partly(
        "two layers or more per stage",
        (
            {"depths": (2, 3, 4, 2)},
            {
                "depths": (2, 2),
                "embed_dims": (8, 16),
                "num_heads": (1, 2),
                "mlp_ratios": (2, 2),
                "sr_ratios": (2, 1),
                "wss": (4, 4),
            },
        ),
        "stages of one layer",
        ({"depths": (1, 2, 2, 2)},),
    ),
    "sr_ratios": honoured("any ratios the grids allow", {"sr_ratios": (2, 1, 1, 1)}),
    "wss": honoured(
        "None (PCPVT), or windows per stage (SVT)", {"wss": None}, {"wss": (2, 4, 1, 2)}
    ),
    "norm_layer": partly(
        "LayerNorm of any eps",
        ({"norm_layer": "@torch.nn.LayerNorm"},),
        "other norms",
        ({"norm_layer": "@timm.layers.RmsNorm"},),
        issue=MODERN,
    ),
    "block_cls": partly(
        "Block", (), "other classes", ({"block_cls": "@tests.interop.variants.OtherTwinsBlock"},)
    ),
}

SWIN: dict[str, Option] = {
    **COMMON,
    **{k: v for k, v in _DROPS.items() if k != "pos_drop_rate"},
    "img_size": partly(
        "sizes whose stage grids the windows divide (or that fit in one window)",
        ({"img_size": 32}, {"img_size": (64, 32)}),
        "other sizes (timm pads the windows)",
        ({"img_size": 48},),
        issue=DYNAMIC_SIZE,
    ),
    "patch_size": partly(
        "square patches",
        ({"patch_size": 2, "img_size": 32},),
        "non-square",
        ({"patch_size": (4, 2), "img_size": (64, 32)},),
    ),
    "global_pool": partly(
        "'avg'",
        ({"global_pool": "avg"},),
        "'max', 'avgmax' (#23), '' (#20)",
        ({"global_pool": "max"}, {"global_pool": ""}),
        issue=MODERN,
    ),
    "embed_dim": honoured("an int (timm's Swin fails on per-stage widths)", {"embed_dim": 24}),
    "depths": honoured(
        "any depths", {"depths": (1, 3)}, {"depths": (2, 2, 1), "num_heads": (1, 2, 2)}
    ),
    "num_heads": honoured("any head counts", {"num_heads": (2, 4)}),
    "head_dim": honoured("any head width", {"head_dim": 12}),
    "window_size": partly(
        "square windows, per stage too",
        ({"window_size": 8}, {"window_size": ((4, 4), (2, 2))}),
        "non-square windows",
        ({"window_size": (4, 2)},),
    ),
    "always_partition": refused("True", {"always_partition": True}, issue=DYNAMIC_SIZE),
    "strict_img_size": honoured(
        "True, False (swin_stage dynamic: each input's grid, windows padded, masks per input)",
        {"strict_img_size": False},
    ),
    "dynamic_img_size": honoured(
        "True, False (as strict_img_size=False)",
        {"dynamic_img_size": True},
        {"dynamic_img_size": True, "img_size": (64, 40)},
    ),
    "mlp_ratio": honoured(
        "any ratio, per stage too", {"mlp_ratio": 3.0}, {"mlp_ratio": (2.0, 61 / 32)}
    ),
    "qkv_bias": honoured("True, False", {"qkv_bias": False}),
    "embed_layer": partly(
        "PatchEmbed",
        (),
        "other classes",
        ({"embed_layer": "@tests.interop.variants.OtherPatchEmbed"},),
    ),
    "norm_layer": partly(
        "LayerNorm of any eps",
        ({"norm_layer": "@timm.layers.LayerNorm"},),
        "other norms",
        ({"norm_layer": "@timm.layers.RmsNorm"},),
        issue=MODERN,
    ),
    "weight_init": honoured(INIT, {"weight_init": "jax"}),
}

#: Swin v2 shares v1's constructor but for ``head_dim`` and ``embed_layer``, and adds the
#: activation and the windows its position-bias MLPs were pre-trained at
SWIN_V2: dict[str, Option] = {
    **{k: v for k, v in SWIN.items() if k not in ("head_dim", "embed_layer", "weight_init")},
    "mlp_ratio": honoured("any ratio", {"mlp_ratio": 3.0}, {"mlp_ratio": 61 / 16}),
    "norm_layer": partly(
        "LayerNorm of any eps",
        ({"norm_layer": "@timm.layers.LayerNorm"},),
        "other norms (a bias-free one fails in timm's own res-post-norm init)",
        ({"norm_layer": "@timm.layers.LayerNormFp32"},),
        issue=None,
    ),
    "act_layer": partly(
        "'gelu'", ({"act_layer": "gelu"},), "other activations", ({"act_layer": "relu"},)
    ),
    "pretrained_window_sizes": partly(
        "square windows per stage (the CPB MLP's coordinates scaled by them, §3.3)",
        ({"pretrained_window_sizes": (8, 2)}, {"pretrained_window_sizes": (0, 6)}),
        "non-square windows",
        ({"pretrained_window_sizes": ((8, 4), 0)},),
    ),
}

#: timm's Eva (EVA-02): the base configuration of the examples is EVA-02's block (SwiGLU,
#: RoPE scaled to a reference grid)
EVA: dict[str, Option] = {
    **COMMON,
    **_DROPS,
    "img_size": honoured("any size the patch divides", {"img_size": 42}),
    "patch_size": partly(
        "square patches", ({"patch_size": 7},), "non-square", ({"patch_size": (14, 7)},)
    ),
    "global_pool": partly(
        "'avg', 'token', 'max', 'avgmax'",
        ({"global_pool": "token"}, {"global_pool": "max"}, {"global_pool": "avgmax"}),
        "'map' (Eva's attention pooling), '' (unpooled tokens, #20)",
        ({"global_pool": "map"}, {"global_pool": ""}),
    ),
    "embed_dim": honoured("any width", {"embed_dim": 48, "num_heads": 3}),
    "depth": partly("one block or more", ({"depth": 3},), "0", ({"depth": 0},)),
    "num_heads": honoured("any head count (RoPE: head widths four divides)", {"num_heads": 4}),
    "num_kv_heads": refused(
        "grouped-query attention (attn_type='rope' only)",
        {"num_kv_heads": 1, "attn_type": "rope", "qkv_fused": False},
    ),
    "qkv_bias": honoured(
        "True, False (q and v biases; k has none)",
        {"qkv_bias": False},
        {"qkv_bias": False, "qkv_fused": False},
    ),
    "qkv_fused": honoured("True, False (q_proj, k_proj, v_proj)", {"qkv_fused": False}),
    "qk_norm": honoured("True", {"qk_norm": True}),
    "mlp_ratio": honoured("any ratio", {"mlp_ratio": 3.0}),
    "swiglu_mlp": honoured("True, False", {"swiglu_mlp": False}),
    "swiglu_align_to": honoured("any alignment of SwiGLU's width", {"swiglu_align_to": 24}),
    "scale_mlp": partly(
        "True with swiglu_mlp (EVA-02's sub-LN)",
        ({"scale_mlp": True},),
        "True with a plain MLP",
        ({"scale_mlp": True, "swiglu_mlp": False},),
    ),
    "scale_attn_inner": honoured(
        "True (a LayerNorm of the merged heads)", {"scale_attn_inner": True}
    ),
    "attn_type": partly("'eva'", (), "'rope' (AttentionRope)", ({"attn_type": "rope"},)),
    "patch_drop_rate": refused(
        "any rate (RoPE gathered per kept patch)", {"patch_drop_rate": 0.25}
    ),
    "norm_layer": partly(
        "LayerNorm and RmsNorm of any eps (the inner norms: LayerNorm of eps 1e-6)",
        ({"norm_layer": "@torch.nn.LayerNorm"}, {"norm_layer": "@timm.layers.RmsNorm"}),
        "other inner norms",
        ({"norm_layer": "@timm.layers.RmsNorm", "scale_mlp": True},),
    ),
    "init_values": honoured("None, or LayerScale of any init", {"init_values": 0.1}),
    "attn_only_layer_scale": refused(
        "True (LayerScale on the attention branch only)",
        {"init_values": 0.1, "attn_only_layer_scale": True},
    ),
    "class_token": honoured("True, False", {"class_token": False}),
    "num_reg_tokens": honoured(
        "any count", {"num_reg_tokens": 2}, {"num_reg_tokens": 2, "no_embed_class": True}
    ),
    "no_embed_class": honoured("True, False", {"no_embed_class": True}),
    "use_abs_pos_emb": honoured("True, False", {"use_abs_pos_emb": False}),
    "use_rot_pos_emb": honoured("True, False", {"use_rot_pos_emb": False}),
    "rope_type": partly(
        "'cat' (RotaryEmbeddingCat)",
        (),
        "'mixed', 'dinov3', 'mrope', 'base'",
        ({"rope_type": "mixed"}, {"rope_type": "dinov3"}),
    ),
    "rope_grid_offset": partly(
        "0", ({"rope_grid_offset": 0.0},), "other offsets", ({"rope_grid_offset": 0.5},)
    ),
    "rope_grid_indexing": partly(
        "'ij'", ({"rope_grid_indexing": "ij"},), "'xy'", ({"rope_grid_indexing": "xy"},)
    ),
    "rope_temperature": honoured("any temperature", {"rope_temperature": 100.0}),
    "rope_rotate_half": refused("True (the half-split pairs)", {"rope_rotate_half": True}),
    "rope_shift_coords": refused("any (train-time RoPE noise)", {"rope_shift_coords": 0.5}),
    "rope_jitter_coords": refused("any (train-time RoPE noise)", {"rope_jitter_coords": 1.5}),
    "rope_rescale_coords": refused("any (train-time RoPE noise)", {"rope_rescale_coords": 1.5}),
    "rope_mrope_section": refused(
        "any (rope_type='mrope')", {"rope_type": "mrope", "rope_mrope_section": (0, 2, 2)}
    ),
    "use_post_norm": refused("True (EVA's post-norm blocks)", {"use_post_norm": True}),
    "use_pre_transformer_norm": honoured(
        "True, False (a norm before the blocks, a bias-free patch embedding)",
        {"use_pre_transformer_norm": True},
    ),
    "use_post_transformer_norm": honoured("None, True, False", {"use_post_transformer_norm": True}),
    "use_fc_norm": honoured("None, True, False", {"use_fc_norm": False}),
    "attn_pool_num_heads": refused(
        "any (global_pool='map')", {"global_pool": "map", "attn_pool_num_heads": 1}
    ),
    "attn_pool_mlp_ratio": refused(
        "any (global_pool='map')", {"global_pool": "map", "attn_pool_mlp_ratio": 2.0}
    ),
    "dynamic_img_size": refused("True", {"dynamic_img_size": True}, issue=DYNAMIC_SIZE),
    "dynamic_img_pad": refused("True", {"dynamic_img_pad": True}, issue=DYNAMIC_SIZE),
    "ref_feat_shape": partly(
        "None or a square grid (RoPE positions scaled to it)",
        ({"ref_feat_shape": 2}, {"ref_feat_shape": None}),
        "non-square grids",
        ({"ref_feat_shape": (4, 2)},),
    ),
    "head_init_scale": honoured(INIT, {"head_init_scale": 0.5}),
}

TNT: dict[str, Option] = {
    **COMMON,
    **_DROPS,
    "attn_drop_rate": honoured(
        "dropout of attention weights (timm's own backward then fails: an inplace dropout "
        "after its softmax; the forwards are compared)",
        {"attn_drop_rate": 0.25, "@no_backward": True},
    ),
    "img_size": honoured("any size the patch divides", {"img_size": 48}),
    "patch_size": partly(
        "square patches",
        ({"patch_size": 8, "img_size": 32},),
        "non-square",
        ({"patch_size": (16, 8)},),
    ),
    "global_pool": partly(
        "'token', 'avg'",
        ({"global_pool": "avg"},),
        _UNPOOLED,
        ({"global_pool": ""},),
        issue=DYNAMIC_SIZE,
    ),
    "embed_dim": honoured("any width", {"embed_dim": 48}),
    "inner_dim": honoured("any inner width", {"inner_dim": 16}),
    "depth": partly("one layer or more", ({"depth": 3},), "0", ({"depth": 0},)),
    "num_heads_inner": honoured("any", {"num_heads_inner": 4}),
    "num_heads_outer": honoured("any", {"num_heads_outer": 4}),
    "mlp_ratio": honoured("any ratio", {"mlp_ratio": 61 / 32}),
    "qkv_bias": honoured("True, False", {"qkv_bias": True}),
    "norm_layer": partly(
        "LayerNorm of any eps",
        ({"norm_layer": "@torch.nn.LayerNorm"},),
        "other norms",
        ({"norm_layer": "@timm.layers.RmsNorm"},),
        issue=MODERN,
    ),
    "first_stride": honoured("any stride dividing the patch", {"first_stride": 2}),
    "legacy": honoured("True, False", {"legacy": True}),
}

CROSSVIT: dict[str, Option] = {
    **COMMON,
    **_DROPS,
    "img_size": honoured("any size both patches divide", {"img_size": 64}),
    "img_scale": honoured("each branch's resize", {"img_scale": (1.0, 32 / 48)}),
    "patch_size": partly(
        "two square patches",
        ({"patch_size": (4, 8)},),
        "one branch or three",
        (
            {
                "patch_size": (8, 16, 16),
                "img_scale": (1.0, 1.0, 1.0),
                "embed_dim": (16, 32, 32),
                "num_heads": (2, 2, 2),
                "depth": ((1, 1, 1, 0),),
            },
        ),
    ),
    "embed_dim": honoured("any widths", {"embed_dim": (24, 48)}),
    "depth": partly(
        "alike multi-scale blocks, each branch one layer or more, fusion depth 0",
        ({"depth": ((1, 2, 0), (1, 2, 0), (1, 2, 0))},),
        "unlike blocks, an empty branch, fusion depth > 0",
        ({"depth": ((1, 1, 0), (1, 2, 0))}, {"depth": ((1, 1, 1),)}, {"depth": ((0, 1, 0),)}),
    ),
    "num_heads": honoured("any head counts", {"num_heads": (1, 4)}),
    "mlp_ratio": partly(
        "one ratio for both branches (the fusion has no MLP)",
        ({"mlp_ratio": (3.0, 3.0, 1.0)},),
        "a ratio per branch",
        ({"mlp_ratio": (2.0, 3.0, 4.0)},),
    ),
    "multi_conv": honoured(
        "True, False", {"multi_conv": True, "patch_size": (12, 16), "img_size": 48}
    ),
    "crop_scale": refused("True", {"crop_scale": True, "img_scale": (1.0, 32 / 48)}),
    "qkv_bias": honoured("True, False", {"qkv_bias": False}),
    "norm_layer": partly(
        "LayerNorm of any eps",
        ({"norm_layer": "@torch.nn.LayerNorm"},),
        "other norms",
        ({"norm_layer": "@timm.layers.RmsNorm"},),
        issue=MODERN,
    ),
    "global_pool": honoured("'token', 'avg' (timm allows no other)", {"global_pool": "avg"}),
}

LEVIT: dict[str, Option] = {
    **COMMON,
    "img_size": honoured("any size", {"img_size": 96}),
    "embed_dim": honoured("any widths", {"embed_dim": (16, 48)}),
    "key_dim": honoured("any", {"key_dim": 4}),
    "depth": honoured("any depths", {"depth": (2, 1)}),
    "num_heads": honoured("any head counts", {"num_heads": (1, 2)}),
    "attn_ratio": honoured("any", {"attn_ratio": 3.0}),
    "mlp_ratio": honoured("any", {"mlp_ratio": 3.0}),
    "stem_backbone": refused(
        "a module other than timm's own stems",
        {"stem_backbone": "@tests.interop.variants.LEVIT_STEM", "stem_stride": 16},
    ),
    "stem_stride": honoured("with stem_backbone only (refused)", {"stem_stride": 16}),
    "stem_type": honoured("'s16', 's8'", {"stem_type": "s8", "img_size": 32}),
    "down_op": honoured("'subsample' (timm builds no other)", {"down_op": "subsample"}),
    "act_layer": partly(
        "Hardswish, GELU, ReLU, SiLU",
        ({"act_layer": "gelu"}, {"act_layer": "relu"}),
        "other activations",
        ({"act_layer": "mish"},),
    ),
    "attn_act_layer": partly(
        "None or the same as act_layer",
        ({"attn_act_layer": "hard_swish"},),
        "another activation",
        ({"attn_act_layer": "relu"},),
    ),
    "use_conv": honoured("True, False (the same function)", {"use_conv": True}),
    "global_pool": partly(
        "'avg'", ({"global_pool": "avg"},), _UNPOOLED, ({"global_pool": ""},), issue=DYNAMIC_SIZE
    ),
}

PIT: dict[str, Option] = {
    **COMMON,
    **_DROPS,
    "img_size": honoured("any size", {"img_size": 80}),
    "patch_size": honoured("any square kernel", {"patch_size": 8, "stride": 4, "img_size": 32}),
    "stride": honoured("any stride", {"stride": 16}),
    "stem_type": honoured("(timm's PiT never reads it)", {"stem_type": "other"}),
    "base_dims": partly(
        "head widths that double the width at each pooling",
        ({"base_dims": (16, 16, 16)},),
        "other widths",
        ({"base_dims": (4, 8, 8)},),
    ),
    "depth": honoured(
        "any depths",
        {"depth": (2, 1, 2)},
        {"depth": (1, 1), "base_dims": (8, 8), "heads": (1, 2)},
    ),
    "heads": partly(
        "head counts that double the width at each pooling",
        ({"heads": (2, 4, 8)},),
        "other counts",
        ({"heads": (2, 2, 4)},),
    ),
    "mlp_ratio": honoured("any ratio", {"mlp_ratio": 3.0}),
    "global_pool": partly(
        "'token'",
        ({"global_pool": "token"},),
        _UNPOOLED,
        ({"global_pool": ""},),
        issue=DYNAMIC_SIZE,
    ),
    "distilled": honoured(
        "True, False", {"distilled": True}, {"distilled": True, "drop_rate": 0.25}
    ),
}


#: timm's VisionTransformerRelPos: ViT with a relative position bias in every attention
#: (relpos_attention) and no absolute position table
VIT_RELPOS: dict[str, Option] = {
    **COMMON,
    "proj_drop_rate": _DROPS["proj_drop_rate"],
    "attn_drop_rate": _DROPS["attn_drop_rate"],
    "img_size": honoured("any size the patch divides, square or not", {"img_size": (32, 48)}),
    "patch_size": partly(
        "square patches", ({"patch_size": 8},), "non-square", ({"patch_size": (16, 8)},)
    ),
    "global_pool": partly(
        "'avg', 'token'",
        ({"global_pool": "token", "class_token": True}, {"global_pool": "avg"}),
        "'' with a classifier (per-token logits); '' with num_classes=0 (unpooled tokens)",
        ({"global_pool": ""},),
        issue=DYNAMIC_SIZE,
    ),
    "embed_dim": honoured("any width", {"embed_dim": 48, "num_heads": 3}),
    "depth": honoured("one block or more", {"depth": 3}),
    "num_heads": honoured("any head count", {"num_heads": 4}),
    "mlp_ratio": honoured("any ratio", {"mlp_ratio": 3.0}),
    "qkv_bias": honoured("True, False", {"qkv_bias": False}),
    "qk_norm": honoured("True (a LayerNorm per head)", {"qk_norm": True}),
    "init_values": honoured(
        "None, or LayerScale (res-post-norm: the norms' scale) of any init",
        {"init_values": None},
        {
            "init_values": 0.1,
            "block_fn": "@timm.models.vision_transformer_relpos.ResPostRelPosBlock",
        },
    ),
    "class_token": honoured(
        "True, False", {"class_token": True}, {"class_token": True, "global_pool": "token"}
    ),
    "fc_norm": honoured("True, False", {"fc_norm": True}, {"fc_norm": True, "class_token": True}),
    "rel_pos_type": honoured(
        "'mlp' (RelPosMlp 'cr'), 'mlp_swin' (Swin v2's CPB), 'bias' (a learned table)",
        {"rel_pos_type": "mlp_swin"},
        {"rel_pos_type": "bias"},
        {"rel_pos_type": "bias", "class_token": True, "global_pool": "token"},
    ),
    "rel_pos_dim": honoured("any hidden width of the bias MLP", {"rel_pos_dim": 24}),
    "shared_rel_pos": refused(
        "True (one bias module shared by every block: timm's vit_srelpos_*)",
        {"shared_rel_pos": True},
    ),
    "weight_init": honoured(INIT, {"weight_init": "jax"}),
    "fix_init": honoured(INIT, {"fix_init": True}),
    "embed_layer": honoured("PatchEmbed", {"embed_layer": "@timm.layers.PatchEmbed"}),
    "norm_layer": partly(
        "LayerNorm of any eps (res-post-norm blocks: eps 1e-6)",
        ({"norm_layer": "@torch.nn.LayerNorm"},),
        "other norms",
        ({"norm_layer": "@timm.layers.RmsNorm"},),
    ),
    "act_layer": partly(
        "GELU (exact or tanh), QuickGELU, ReLU, SiLU",
        ({"act_layer": "@timm.layers.GELUTanh"}, {"act_layer": "@torch.nn.ReLU"}),
        "other activations (Mish, ...)",
        ({"act_layer": "@torch.nn.Mish"},),
    ),
    "block_fn": honoured(
        "RelPosBlock (pre-norm), ResPostRelPosBlock (res-post-norm: res_post_layer)",
        {"block_fn": "@timm.models.vision_transformer_relpos.ResPostRelPosBlock"},
        {
            "block_fn": "@timm.models.vision_transformer_relpos.ResPostRelPosBlock",
            "class_token": True,
            "global_pool": "token",
            "drop_path_rate": 0.2,
        },
    ),
}


TABLES: dict[str, dict[str, Option]] = {
    "timm.models.vision_transformer.VisionTransformer": VISION_TRANSFORMER,
    "timm.models.deit.VisionTransformerDistilled": VISION_TRANSFORMER_DISTILLED,
    "timm.models.cait.Cait": CAIT,
    "timm.models.twins.Twins": TWINS,
    "timm.models.swin_transformer.SwinTransformer": SWIN,
    "timm.models.swin_transformer_v2.SwinTransformerV2": SWIN_V2,
    "timm.models.eva.Eva": EVA,
    "timm.models.vision_transformer_relpos.VisionTransformerRelPos": VIT_RELPOS,
    "timm.models.tnt.TNT": TNT,
    "timm.models.crossvit.CrossVit": CROSSVIT,
    "timm.models.levit.Levit": LEVIT,
    "timm.models.levit.LevitDistilled": LEVIT,
    "timm.models.pit.PoolingVisionTransformer": PIT,
}
