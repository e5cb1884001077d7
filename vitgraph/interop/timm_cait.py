"""timm's Cait (every ``cait_*`` model) as a vitgraph spec: talking-heads encoder layers
with LayerScale, then the class token and the class-attention layers (CaiT §2-3).

Our keys equal timm's except LayerScale's: timm's ``gamma_1``/``gamma_2`` are our
``ls1.gamma``/``ls2.gamma`` (the ``layer_scale`` kind's name, shared with DeiT III).
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
    model_name,
    refuse,
    spec_document,
    timm_converter,
    width_ratio,
)

_GAMMA = re.compile(r"\.gamma_([12])$")


def _layer_scale(model: Reference, gamma: Reference) -> float:
    if gamma.device.type == "meta":
        return 1e-5  # any value: counts do not depend on it
    value = float(gamma.detach().flatten()[0])
    return value if value > 0 else 1e-5  # weights are copied over it anyway


#: the constructor options that choose each group's classes: block, attention, MLP
_OPTIONS = {
    "blocks": ("block_layers", "attn_block", "mlp_block"),
    "blocks_token_only": ("block_layers_token", "attn_block_token_only", "mlp_block_token_only"),
}


def _layer(
    model: Reference, block: Reference, classes: tuple[str, str], where: str
) -> dict[str, Any]:
    """The params of one LayerScale block (self- or class-attention)."""
    block_option, attn_option, mlp_option = _OPTIONS[where]
    if type(block).__name__ != classes[0]:
        raise refuse(model, f"{block_option}={type(block).__name__}")
    attn, mlp = block.attn, block.mlp
    if type(attn).__name__ != classes[1]:
        raise refuse(model, f"{attn_option}={type(attn).__name__}")
    if (
        type(mlp).__name__ != "Mlp"
        or not isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity)
        or mlp.fc1.bias is None
    ):
        raise refuse(model, f"{mlp_option}={type(mlp).__name__}")
    eps1 = layernorm_eps(model, block.norm1, "norm_layer")
    eps2 = layernorm_eps(model, block.norm2, "norm_layer")
    if eps1 is None or eps1 != eps2:
        raise refuse(model, "norm_layer without LayerNorm on both branches")
    first_linear = attn.qkv if hasattr(attn, "qkv") else attn.q
    dim = first_linear.in_features
    return {
        "heads": attn.num_heads,
        "head_dim": dim // attn.num_heads,
        "qkv_bias": first_linear.bias is not None,
        "proj_bias": attn.proj.bias is not None,
        "mlp_ratio": width_ratio(mlp.fc1.out_features, mlp.fc1.in_features),
        "act": activation_name(model, mlp.act, "act_layer"),
        "norm_eps": eps1,
        "layer_scale": _layer_scale(model, block.gamma_1),
        "attn_drop": float(attn.attn_drop.p),
        "proj_drop": float(attn.proj_drop.p),
    }


def _group(
    model: Reference, name: str, kind: str, blocks: list[nn.Module], classes: tuple[str, str]
) -> dict[str, Any]:
    if not blocks:
        raise refuse(model, f"{'depth' if name == 'blocks' else 'depth_token_only'}=0")
    first = _layer(model, blocks[0], classes, name)
    for index, block in enumerate(blocks[1:], start=1):
        other = _layer(model, block, classes, name)
        other["layer_scale"] = first["layer_scale"]  # the value is overwritten by the weights
        if other != first:
            raise refuse(model, f"{name}.{index} configured unlike {name}.0")
    entry: dict[str, Any] = {"id": name, "kind": kind, "repeat": len(blocks), **first}
    rates = [drop_rate(b.drop_path) for b in blocks]
    if any(rates):
        entry["at"] = {i: {"drop_path": r} for i, r in enumerate(rates)}
    return entry


@timm_converter("Cait")
def convert_cait(model: Reference) -> Conversion:
    name = model_name(model)
    embed = model.patch_embed
    if type(embed).__name__ != "PatchEmbed" or getattr(embed, "dynamic_img_pad", False):
        raise refuse(model, f"patch_layer={type(embed).__name__}")
    proj: nn.Conv2d = embed.proj
    if proj.kernel_size != proj.stride or proj.padding != (0, 0):
        raise refuse(model, "patch_layer with an overlapping patch embedding")
    if proj.kernel_size[0] != proj.kernel_size[1]:
        raise refuse(model, f"patch_size={proj.kernel_size}", "only square patches")
    if model.blocks_token_only is None or model.cls_token is None:
        raise refuse(model, "depth_token_only=0", "a pruned model: no class-attention stage")
    if not isinstance(model.head, nn.Linear):
        raise refuse(model, "num_classes=0", "a model without a classifier head")
    graph: list[dict[str, Any]] = [
        {
            "id": "patch_embed",
            "kind": "patch_embed",
            "patch": proj.kernel_size[0],
            "dim": proj.out_channels,
            "bias": proj.bias is not None,
        }
    ]
    embed_eps = layernorm_eps(model, embed.norm, "patch_embed norm")
    if embed_eps is not None:
        graph[0].update(norm=True, norm_eps=embed_eps)
    graph.append({"id": "pos_embed", "kind": "learned_pos"})
    if drop_rate(model.pos_drop):
        graph.append({"id": "pos_drop", "kind": "dropout", "rate": drop_rate(model.pos_drop)})
    graph.append(
        _group(
            model,
            "blocks",
            "encoder_layer",
            list(model.blocks),
            ("LayerScaleBlock", "TalkingHeadAttn"),
        )
    )
    graph[-1]["attention"] = "talking_heads"
    graph.append({"id": "cls_token", "kind": "cls_token"})
    graph.append(
        _group(
            model,
            "blocks_token_only",
            "class_attention_layer",
            list(model.blocks_token_only),
            ("LayerScaleBlockClassAttn", "ClassAttn"),
        )
    )
    final_eps = layernorm_eps(model, model.norm, "norm")
    if final_eps is not None:
        graph.append({"id": "norm", "kind": "layernorm", "eps": final_eps})
    pool = model.global_pool
    if pool not in ("token", "avg"):
        raise refuse(model, f"global_pool='{pool}'", "unpooled token outputs")
    graph.append({"id": "pool", "kind": "take_cls" if pool == "token" else "mean_pool"})
    if drop_rate(model.head_drop):
        graph.append({"id": "head_drop", "kind": "dropout", "rate": drop_rate(model.head_drop)})
    graph.append(
        {
            "id": "head",
            "kind": "linear_head",
            "classes": model.head.out_features,
            "bias": model.head.bias is not None,
        }
    )
    spec = spec_document(name, tuple(embed.img_size), proj.in_channels, graph)
    return Conversion(spec, rename=lambda key: _GAMMA.sub(r".ls\1.gamma", key))
