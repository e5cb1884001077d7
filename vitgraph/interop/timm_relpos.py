"""timm's VisionTransformerRelPos (ViT with a relative position bias in every attention
and no absolute position table) as a vitgraph spec: ``encoder_layer`` or, for its
``ResPostRelPosBlock``, ``res_post_layer``, with ``relpos_attention``; pooling, norms and
head as timm's VisionTransformer.

Node ids follow timm's module names, so the weights load key for key. Every
constructor argument is honoured or refused by name
(``vitgraph.interop.options_timm.VIT_RELPOS``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from vitgraph.interop.timm import (
    Conversion,
    Reference,
    drop_rate,
    model_name,
    norm_of,
    refuse,
    spec_document,
    timm_converter,
)
from vitgraph.interop.timm_vit import _head, _mlp, _norm, _pool


@timm_converter("VisionTransformerRelPos")
def convert_vit_relpos(model: Reference) -> Conversion:
    if model.shared_rel_pos is not None:
        raise refuse(model, "shared_rel_pos=True", "one bias module shared by every block")
    embed = model.patch_embed
    proj: nn.Conv2d = embed.proj
    if proj.kernel_size[0] != proj.kernel_size[1]:
        raise refuse(model, f"patch_size={proj.kernel_size}", "only square patches")
    if getattr(embed, "dynamic_img_pad", False) or getattr(embed, "strict_img_size", True) is False:
        raise refuse(model, "a dynamic image size", "a bias grid built per input")
    graph: list[dict[str, Any]] = [
        {
            "id": "patch_embed",
            "kind": "patch_embed",
            "patch": proj.kernel_size[0],
            "dim": proj.out_channels,
            "bias": proj.bias is not None,
        }
    ]
    if model.cls_token is not None:
        graph.append({"id": "cls_token", "kind": "cls_token"})
    graph.append(_blocks(model))
    graph += _norm(model, model.norm, "norm")
    if model.global_pool:
        graph += _pool(model)
    else:
        raise refuse(model, "global_pool=''", "unpooled token outputs")
    graph += _norm(model, model.fc_norm, "fc_norm")
    graph += _head(model)
    spec = spec_document(model_name(model), tuple(embed.img_size), proj.in_channels, graph)
    return Conversion(spec)


def _rel_pos(model: Reference, attn: Reference) -> dict[str, Any]:
    """relpos_attention's bias options for timm's ``RelPosMlp`` ('cr' and 'swin' modes)
    and ``RelPosBias``."""
    bias = attn.rel_pos
    cls = type(bias).__name__
    if cls == "RelPosBias":
        return {"rel_pos": "table"}
    if cls != "RelPosMlp":
        raise refuse(model, f"rel_pos_type giving {cls}")
    if bias.mode not in ("cr", "swin"):
        raise refuse(model, f"RelPosMlp mode '{bias.mode}'")
    if bias.mode == "swin" and any(bias.pretrained_window_size):
        raise refuse(model, "RelPosMlp with a pretrained_window_size")
    return {
        "rel_pos": "mlp" if bias.mode == "cr" else "mlp_swin",
        "rel_pos_hidden": bias.mlp.fc1.out_features,
    }


def _blocks(model: Reference) -> dict[str, Any]:
    blocks = list(model.blocks)
    if not blocks:
        raise refuse(model, "depth=0")
    first = blocks[0]
    attn = first.attn
    post = type(first).__name__ == "ResPostRelPosBlock"
    if not post and type(first).__name__ != "RelPosBlock":
        raise refuse(model, f"block_fn={type(first).__name__}")
    norm = norm_of(model, first.norm1, "norm_layer")
    if norm is None or norm[0] != "layernorm" or (post and norm[1] != 1e-6):
        raise refuse(model, f"norm_layer giving {norm}")
    qk_norm = norm_of(model, attn.q_norm, "norm_layer")
    mlp = _mlp(model, first.mlp)
    if mlp.get("mlp") or not mlp["mlp_bias"]:
        raise refuse(model, "an MLP other than timm's Mlp with biases")
    entry: dict[str, Any] = {
        "id": "blocks",
        "kind": "res_post_layer" if post else "encoder_layer",
        "repeat": len(blocks),
        "heads": attn.num_heads,
        "head_dim": attn.head_dim,
        "qkv_bias": attn.qkv.bias is not None,
        "mlp_ratio": mlp["mlp_ratio"],
        "act": mlp["act"],
        "norm_eps": norm[1],
        "qk_norm": None if qk_norm is None else qk_norm[0],
        "attn_drop": float(attn.attn_drop.p),
        "proj_drop": float(attn.proj_drop.p),
        **_rel_pos(model, attn),
    }
    if qk_norm is not None and qk_norm[1] != 1e-6:
        raise refuse(model, f"qk_norm with a norm of eps {qk_norm[1]}")
    if post:
        entry["layer_scale"] = None if first.init_values is None else float(first.init_values)
    else:
        entry["attention"] = "relpos_attention"
        entry["layer_scale"] = None if isinstance(first.ls1, nn.Identity) else 1e-6
    rates = [drop_rate(b.drop_path1) for b in blocks]
    if any(rates):
        entry["at"] = {i: {"drop_path": r} for i, r in enumerate(rates)}
    return entry
