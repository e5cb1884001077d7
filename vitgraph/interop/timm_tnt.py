"""timm's TNT (Transformer in Transformer, and its legacy variant) as a vitgraph spec.

Node ids follow timm's module names; the projections timm keeps at the top level
(``norm1_proj``, ``proj``, ``norm2_proj``) and in each block live in one
``tnt_word_projection`` node here, and ``pixel_pos`` inside ``pixel_embed``.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from vitgraph.interop.timm import (
    Conversion,
    Reference,
    activation_name,
    drop_rate,
    layernorm_eps,
    refuse,
    spec_document,
    timm_converter,
    width_ratio,
)


@timm_converter("TNT")
def convert_tnt(model: Reference) -> Conversion:
    embed = model.pixel_embed
    if model.global_pool not in ("token", "avg"):
        raise refuse(model, f"global_pool='{model.global_pool}'", "unpooled token outputs")
    if embed.patch_size[0] != embed.patch_size[1]:
        raise refuse(model, f"patch_size={tuple(embed.patch_size)}", "only square patches")
    conv: nn.Conv2d = embed.proj
    if conv.kernel_size != (7, 7) or conv.padding != (3, 3) or conv.stride[0] != conv.stride[1]:
        raise refuse(model, f"first_stride={conv.stride}", "only square strides")
    if not model.blocks:
        raise refuse(model, "depth=0")
    words = embed.new_patch_size[0] * embed.new_patch_size[1]
    first = model.blocks[0]
    legacy = first.norm2_proj is None
    graph: list[dict[str, Any]] = [
        {
            "id": "pixel_embed",
            "kind": "tnt_pixel_embed",
            "patch": embed.patch_size[0],
            "dim": conv.out_channels,
            "stride": conv.stride[0],
            "legacy": legacy,
        },
        {
            "id": "patch_embed",
            "kind": "tnt_word_projection",
            "words": words,
            "dim": model.embed_dim,
            "norm_eps": layernorm_eps(model, model.norm1_proj, "norm_layer"),
        },
        {"id": "cls_token", "kind": "cls_token"},
        {"id": "patch_pos", "kind": "learned_pos"},
    ]
    if drop_rate(model.pos_drop):
        graph.append({"id": "pos_drop", "kind": "dropout", "rate": drop_rate(model.pos_drop)})
    for module in (first.mlp_in.act, first.mlp.act):
        if activation_name(model, module, "act_layer") != "gelu":
            raise refuse(model, f"act_layer={type(module).__name__}")
    if first.mlp_in.fc1.out_features != 4 * first.mlp_in.fc1.in_features:
        raise refuse(model, "inner_dim with an inner MLP other than 4x")
    blocks: dict[str, Any] = {
        "id": "blocks",
        "kind": "tnt_layer",
        "repeat": len(model.blocks),
        # the words and the patch tokens; later blocks take the block before's (tnt_layer chains)
        "inputs": ["pixel_embed", graph[-1]["id"]],
        "heads_inner": first.attn_in.num_heads,
        "heads_outer": first.attn_out.num_heads,
        "words": words,
        "legacy": legacy,
        "mlp_ratio": width_ratio(first.mlp.fc1.out_features, first.mlp.fc1.in_features),
        "qkv_bias": first.attn_in.qk.bias is not None,
        "attn_drop": float(first.attn_in.attn_drop.p),
        "proj_drop": float(first.attn_in.proj_drop.p),
        "norm_eps": layernorm_eps(model, first.norm_in, "norm_layer"),
    }
    rates = [drop_rate(b.drop_path) for b in model.blocks]
    if any(rates):
        blocks["at"] = {i: {"drop_path": r} for i, r in enumerate(rates)}
    graph.append(blocks)
    graph.append(
        {"id": "norm", "kind": "layernorm", "eps": layernorm_eps(model, model.norm, "norm_layer")}
    )
    pool = "take_cls" if model.global_pool == "token" else "mean_pool"
    graph.append({"id": "pool", "kind": pool})
    if drop_rate(model.head_drop):
        graph.append({"id": "head_drop", "kind": "dropout", "rate": drop_rate(model.head_drop)})
    if not isinstance(model.head, nn.Linear):
        raise refuse(model, "num_classes=0", "a model without a classifier head")
    graph.append({"id": "head", "kind": "linear_head", "classes": model.head.out_features})
    cfg = getattr(model, "pretrained_cfg", None) or {}
    spec = spec_document(
        str(cfg.get("architecture") or "TNT"), tuple(embed.img_size), model.in_chans, graph
    )
    return Conversion(spec, rename=_rename)


_RULES = [
    (r"^pixel_pos$", "pixel_embed.pixel_pos"),
    (r"^(norm1_proj|proj|norm2_proj)\.", r"patch_embed.\1."),
    (r"^blocks\.(\d+)\.(norm1_proj|proj|norm2_proj)\.", r"blocks.\1.word_proj.\2."),
]


def _rename(key: str) -> str:
    for pattern, repl in _RULES:
        key = re.sub(pattern, repl, key)
    return key
