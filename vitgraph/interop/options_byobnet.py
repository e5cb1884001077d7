"""The option audit of timm's ``ByobNet`` (see ``vitgraph.interop.options``): the
arguments of ``ByobNet``, of the ``ByoModelCfg`` and ``ByoBlockCfg`` its entrypoints pass,
and of the block and attention classes ``from_timm`` converts (``BottleneckBlock``,
``SelfAttnBlock``, ``BottleneckAttn``). Examples as in ``options_timm``."""

from __future__ import annotations

from vitgraph.interop.options import MODERN, Option, honoured, partly, refused
from vitgraph.interop.options_timm import COMMON, INIT

#: ByobNet's examples: keyword arguments of ByobNet (its ``**kwargs`` overlay the
#: ByoModelCfg), and ``"@bottle"`` / ``"@self_attn"``: ByoBlockCfg fields replaced in the
#: base configuration's blocks of that type
_NO_DROP_PATH = "> 0 (vitgraph's bot_bottleneck has no stochastic depth)"
_SET_BY_BYOBNET = "set by ByobNet from the configuration: "
_DILATED = {"@name": "resnet32ts", "output_stride": 16}

BYOBNET: dict[str, Option] = {
    **COMMON,
    "drop_path_rate": refused(_NO_DROP_PATH, {"drop_path_rate": 0.1}),
    "cfg": honoured("every ByoModelCfg field the tables below honour", {}),
    "global_pool": partly(
        "'avg' (and None: the head's default)",
        ({"global_pool": "avg"},),
        "'max', 'avgmax' (#23), '' (unpooled maps, #20)",
        ({"global_pool": "max"}, {"global_pool": ""}),
        issue=MODERN,
    ),
    "output_stride": partly(
        "32, or a stride whose dilation reaches only attention blocks (timm's ignore it)",
        ({"output_stride": 32}, {"output_stride": 16}),
        "a stride that dilates convs",
        (_DILATED,),
    ),
    "img_size": honoured(
        "the size the attention tables are built for", {"img_size": 96}, {"img_size": (64, 96)}
    ),
    "drop_block_rate": refused("> 0 (DropBlock)", {"drop_block_rate": 0.1}),
    "drop_block_size": honoured("(DropBlock itself is refused)", {"drop_block_size": 5}),
    "zero_init_last": honoured(INIT, {"zero_init_last": False}),
}

BYO_MODEL_CFG: dict[str, Option] = {
    "blocks": honoured(
        "stages of 'bottle' and 'self_attn' blocks (see ByoBlockCfg)",
        {"@bottle": {"d": 3, "c": 48}},
    ),
    "downsample": partly(
        "'conv1x1'",
        ({"downsample": "conv1x1"},),
        "'avg' (average-pool shortcuts), '' (no residual where the width changes)",
        ({"downsample": "avg"}, {"downsample": ""}),
    ),
    "stem_type": partly(
        "'', '3x3', '7x7', 'tiered', 'deep', 'quad'",
        (
            {"stem_type": ""},
            {"stem_type": "7x7"},
            {"stem_type": "deep"},
            {"stem_type": "quad"},
            {"stem_type": "7x7", "stem_pool": ""},
            {"stem_type": "tiered", "stem_pool": ""},
        ),
        "'quad2' (convs without norm), 'rep', 'one'",
        ({"stem_type": "quad2"}, {"stem_type": "rep"}, {"stem_type": "one"}),
    ),
    "stem_pool": partly(
        "'maxpool', 'max', ''",
        ({"stem_pool": "max"}, {"stem_pool": ""}),
        "'max2', 'avg', 'avgpool', 'avg2'",
        ({"stem_pool": "avg"}, {"stem_pool": "max2"}),
    ),
    "stem_chs": honoured(
        "any widths", {"stem_chs": 24}, {"stem_chs": (8, 12, 16), "stem_type": ""}
    ),
    "width_factor": honoured("any factor", {"width_factor": 1.5}),
    "num_features": partly(
        "0", ({"num_features": 0},), "> 0 (a final conv)", ({"num_features": 96},)
    ),
    "zero_init_last": honoured(INIT, {"zero_init_last": False}),
    "fixed_input_size": honoured(
        "True, False (attention tables need it)",
        {"fixed_input_size": False, "@self_attn": {"type": "bottle"}},
    ),
    "act_layer": partly(
        "ReLU, SiLU, GELU, Hardswish, Tanh",
        ({"act_layer": "silu"}, {"act_layer": "gelu"}),
        "other activations",
        ({"act_layer": "mish"},),
    ),
    "norm_layer": partly(
        "BatchNorm",
        ({"norm_layer": "batchnorm"},),
        "other norms (EvoNorm, GroupNorm, ...)",
        ({"norm_layer": "evonorms0"},),
    ),
    "aa_layer": partly("'' (none)", ({"aa_layer": ""},), "anti-aliasing", ({"aa_layer": "avg"},)),
    "head_hidden_size": partly(
        "None (timm's classifier head allows no other)",
        ({"head_hidden_size": None},),
        "a width, with head_type='mlp' (an MLP head)",
        ({"head_hidden_size": 32, "head_type": "mlp"},),
    ),
    "head_type": partly(
        "'classifier', ''",
        ({"head_type": ""},),
        "'mlp', 'attn_abs', 'attn_rot'",
        ({"head_type": "mlp"}, {"head_type": "attn_abs"}),
    ),
    "attn_layer": partly(
        "None",
        (),
        "channel attention ('se', 'eca', 'gc', ...)",
        ({"attn_layer": "se"}, {"attn_layer": "eca"}),
    ),
    "attn_kwargs": honoured("(attn_layer itself is refused)", {"attn_kwargs": {"rd_ratio": 0.5}}),
    "self_attn_layer": partly(
        "'bottleneck'",
        ({"self_attn_layer": "bottleneck"},),
        "'halo', 'lambda' and others",
        ({"self_attn_layer": "halo", "self_attn_kwargs": {"block_size": 4, "halo_size": 1}},),
    ),
    "self_attn_kwargs": honoured(
        "what BottleneckAttn honours (its table)", {"self_attn_kwargs": {"num_heads": 2}}
    ),
    "block_kwargs": honoured(
        "what the block classes honour (their tables)", {"block_kwargs": {"bottle_in": False}}
    ),
}

BYO_BLOCK_CFG: dict[str, Option] = {
    "type": partly(
        "'bottle', 'self_attn'",
        (),
        "'basic', 'dark', 'edge', 'rep', 'one'",
        ({"@bottle": {"type": "basic"}}, {"@bottle": {"type": "edge"}}),
    ),
    "d": honoured("any depth", {"@bottle": {"d": 1}, "@self_attn": {"d": 3}}),
    "c": honoured("any width", {"@bottle": {"c": 40}}),
    "s": honoured("1, 2", {"@bottle": {"s": 2}, "img_size": 128}),
    "gs": partly("None, 0", ({"@bottle": {"gs": 0}},), "grouped convs", ({"@bottle": {"gs": 4}},)),
    "br": partly(
        "ratios up to 1",
        ({"@bottle": {"br": 0.5}}, {"@self_attn": {"br": 1.0}}),
        "a bottleneck wider than the block",
        ({"@bottle": {"br": 2.0}},),
    ),
    "attn_layer": partly(
        "None, ''",
        ({"@bottle": {"attn_layer": ""}},),
        "channel attention",
        ({"@bottle": {"attn_layer": "se"}},),
    ),
    "attn_kwargs": honoured("(attn_layer itself is refused)", {"@bottle": {"attn_kwargs": {}}}),
    "self_attn_layer": partly(
        "None, 'bottleneck'",
        ({"@self_attn": {"self_attn_layer": "bottleneck"}},),
        "other self-attention",
        ({"@self_attn": {"self_attn_layer": "lambda"}},),
    ),
    "self_attn_kwargs": honoured(
        "what BottleneckAttn honours", {"@self_attn": {"self_attn_kwargs": {"qkv_bias": True}}}
    ),
    "block_kwargs": honoured(
        "what the block classes honour", {"@bottle": {"block_kwargs": {"kernel_size": 3}}}
    ),
}

_BLOCK = {
    "in_chs": honoured(_SET_BY_BYOBNET + "the previous width", {"@bottle": {"c": 24}}),
    "out_chs": honoured(_SET_BY_BYOBNET + "c", {"@bottle": {"c": 40}}),
    "kernel_size": partly(
        "3",
        ({"@bottle": {"block_kwargs": {"kernel_size": 3}}},),
        "other kernels",
        ({"@bottle": {"block_kwargs": {"kernel_size": 5}}},),
    ),
    "stride": honoured(_SET_BY_BYOBNET + "s", {"@bottle": {"s": 2}, "img_size": 128}),
    "dilation": refused(_SET_BY_BYOBNET + "output_stride: dilated convs", _DILATED),
    "bottle_ratio": honoured(_SET_BY_BYOBNET + "br", {"@bottle": {"br": 0.5}}),
    "group_size": refused(_SET_BY_BYOBNET + "gs: grouped convs", {"@bottle": {"gs": 4}}),
    "downsample": partly(
        _SET_BY_BYOBNET + "downsample, 'conv1x1'",
        ({"downsample": "conv1x1"},),
        "'avg', ''",
        ({"downsample": "avg"},),
    ),
    "linear_out": refused(
        "True (no act after the residual)", {"block_kwargs": {"linear_out": True}}
    ),
    "extra_conv": refused("True (a second kxk conv)", {"block_kwargs": {"extra_conv": True}}),
    "bottle_in": partly(
        "False; True where the bottleneck stays no wider than the block",
        ({"block_kwargs": {"bottle_in": True}},),
        "True widening the bottleneck past the block",
        ({"block_kwargs": {"bottle_in": True}, "@bottle": {"br": 1.0}, "stem_chs": 64},),
    ),
    "layers": honoured(_SET_BY_BYOBNET + "act_layer, norm_layer, attn_layer, ...", {}),
    "drop_block": refused(_SET_BY_BYOBNET + "drop_block_rate", {"drop_block_rate": 0.1}),
    "drop_path_rate": refused(_SET_BY_BYOBNET + "drop_path_rate", {"drop_path_rate": 0.1}),
    "device": COMMON["device"],
    "dtype": COMMON["dtype"],
}

BOTTLENECK_BLOCK: dict[str, Option] = {
    **_BLOCK,
    "attn_last": partly(
        "False, and True without an attn_layer",
        ({"@bottle": {"block_kwargs": {"attn_last": True}}},),
        "True with an attn_layer (channel attention after the last conv)",
        ({"@bottle": {"block_kwargs": {"attn_last": True}, "attn_layer": "se"}},),
    ),
    "linear_out": refused(
        "True (no act after the residual)", {"@bottle": {"block_kwargs": {"linear_out": True}}}
    ),
    "extra_conv": refused(
        "True (a second kxk conv)", {"@bottle": {"block_kwargs": {"extra_conv": True}}}
    ),
}

SELF_ATTN_BLOCK: dict[str, Option] = {
    **_BLOCK,
    "kernel_size": honoured(
        "any (read by extra_conv only, which is refused)",
        {"@self_attn": {"block_kwargs": {"kernel_size": 5}}},
    ),
    "linear_out": refused(
        "True (no act after the residual)",
        {"@self_attn": {"block_kwargs": {"linear_out": True}}},
    ),
    "extra_conv": refused(
        "True (a kxk conv before the attention)",
        {"@self_attn": {"block_kwargs": {"extra_conv": True}}},
    ),
    "post_attn_na": partly(
        "True",
        ({"@self_attn": {"block_kwargs": {"post_attn_na": True}}},),
        "False (no norm and act after the attention)",
        ({"@self_attn": {"block_kwargs": {"post_attn_na": False}}},),
    ),
    "feat_size": honoured(_SET_BY_BYOBNET + "img_size", {"img_size": 96}),
}

BOTTLENECK_ATTN: dict[str, Option] = {
    "dim": honoured(_SET_BY_BYOBNET + "the block's bottleneck width", {"@self_attn": {"br": 0.5}}),
    "dim_out": honoured(_SET_BY_BYOBNET + "the bottleneck width", {"@self_attn": {"c": 96}}),
    "feat_size": honoured(_SET_BY_BYOBNET + "img_size", {"img_size": 96}),
    "stride": honoured(_SET_BY_BYOBNET + "s: 1, 2", {"@self_attn": {"s": 1}}),
    "num_heads": honoured("any head count", {"self_attn_kwargs": {"num_heads": 2}}),
    "dim_head": partly(
        "the bottleneck width / num_heads",
        ({"self_attn_kwargs": {"dim_head": 4}},),
        "other widths",
        ({"self_attn_kwargs": {"dim_head": 8}},),
    ),
    "qk_ratio": partly(
        "1",
        ({"self_attn_kwargs": {"qk_ratio": 1.0}},),
        "other ratios",
        ({"self_attn_kwargs": {"qk_ratio": 0.5}},),
    ),
    "qkv_bias": honoured("True, False", {"self_attn_kwargs": {"qkv_bias": True}}),
    "scale_pos_embed": refused("True", {"self_attn_kwargs": {"scale_pos_embed": True}}),
    "device": COMMON["device"],
    "dtype": COMMON["dtype"],
}


TABLES: dict[str, dict[str, Option]] = {
    "timm.models.byobnet.ByobNet": BYOBNET,
    "timm.models.byobnet.ByoModelCfg": BYO_MODEL_CFG,
    "timm.models.byobnet.ByoBlockCfg": BYO_BLOCK_CFG,
    "timm.models.byobnet.BottleneckBlock": BOTTLENECK_BLOCK,
    "timm.models.byobnet.SelfAttnBlock": SELF_ATTN_BLOCK,
    "timm.layers.bottleneck_attn.BottleneckAttn": BOTTLENECK_ATTN,
}
