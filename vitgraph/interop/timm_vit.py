"""timm's VisionTransformer and VisionTransformerDistilled (ViT, DeiT, DeiT III, the
avg-pooled and no-class-token configurations) as vitgraph specs."""

from __future__ import annotations

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
)


@timm_converter("VisionTransformer", "VisionTransformerDistilled")
def convert_vit(model: Reference) -> Conversion:
    name = type(model).__name__
    for attr, what in (
        ("reg_token", "register tokens (reg_tokens)"),
        ("attn_pool", "attention pooling (global_pool='map')"),
    ):
        if getattr(model, attr, None) is not None:
            raise refuse(model, what)
    embed = model.patch_embed
    if type(embed).__name__ != "PatchEmbed":
        raise refuse(model, f"embed_layer={type(embed).__name__}", "hybrid CNN stems")
    for attr, what in (("patch_drop", "patch_drop_rate"), ("norm_pre", "pre_norm")):
        if not isinstance(getattr(model, attr, nn.Identity()), nn.Identity):
            raise refuse(model, what)
    if getattr(embed, "dynamic_img_pad", False):
        raise refuse(model, "dynamic_img_pad")
    proj: nn.Conv2d = embed.proj
    if proj.kernel_size != proj.stride or proj.padding != (0, 0):
        raise refuse(model, "an overlapping patch embedding")
    dim = proj.out_channels
    graph: list[dict[str, Any]] = [
        {
            "id": "patch_embed",
            "kind": "patch_embed",
            "patch": proj.kernel_size[0],
            "dim": dim,
            "bias": proj.bias is not None,
        }
    ]
    if proj.kernel_size[0] != proj.kernel_size[1]:
        raise refuse(model, f"a non-square patch {proj.kernel_size}")
    embed_norm = layernorm_eps(model, embed.norm, "patch_embed norm")
    if embed_norm is not None:
        graph[0].update(norm=True, norm_eps=embed_norm)
    if getattr(model, "cls_token", None) is not None:
        graph.append({"id": "cls_token", "kind": "cls_token"})
    if getattr(model, "dist_token", None) is not None:
        graph.append({"id": "dist_token", "kind": "dist_token"})
    if getattr(model, "pos_embed", None) is not None:
        graph.append(
            {"id": "pos_embed", "kind": "learned_pos", "include_prefix": not model.no_embed_class}
        )
    if drop_rate(model.pos_drop):
        graph.append({"id": "pos_drop", "kind": "dropout", "rate": drop_rate(model.pos_drop)})
    graph.append(_blocks(model))
    final_eps = layernorm_eps(model, model.norm, "norm")
    if final_eps is not None:
        graph.append({"id": "norm", "kind": "layernorm", "eps": final_eps})
    pool = model.global_pool
    if pool == "token":
        graph.append({"id": "pool", "kind": "take_cls"})
    elif pool == "avg":
        graph.append({"id": "pool", "kind": "mean_pool"})
    else:
        raise refuse(model, f"global_pool='{pool}'")
    fc_eps = layernorm_eps(model, model.fc_norm, "fc_norm")
    if fc_eps is not None:
        graph.append({"id": "fc_norm", "kind": "layernorm", "eps": fc_eps})
    if drop_rate(model.head_drop):
        graph.append({"id": "head_drop", "kind": "dropout", "rate": drop_rate(model.head_drop)})
    if not isinstance(model.head, nn.Linear):
        raise refuse(model, "num_classes=0 (no classifier head)")
    graph.append({"id": "head", "kind": "linear_head", "classes": model.head.out_features})
    if getattr(model, "head_dist", None) is not None:
        graph.append(
            {
                "id": "head_dist",
                "kind": "distill_head",
                "inputs": ["head", "norm" if final_eps is not None else "blocks"],
            }
        )
    size = tuple(embed.img_size)
    spec = spec_document(
        model.pretrained_cfg.get("architecture", name)
        if hasattr(model, "pretrained_cfg")
        else name,
        size,
        proj.in_channels,
        graph,
    )

    def after_build(theirs: Reference, ours: Reference) -> None:
        ours.set_distilled_training(bool(getattr(theirs, "distilled_training", False)))

    return Conversion(spec, after_build=after_build)


def _blocks(model: Reference) -> dict[str, Any]:
    blocks = list(model.blocks)
    first = blocks[0]
    if type(first).__name__ != "Block":
        raise refuse(model, f"block_fn={type(first).__name__}")
    attn, mlp = first.attn, first.mlp
    if type(attn).__name__ != "Attention":
        raise refuse(model, f"attention class {type(attn).__name__}")
    for attr, what in (("q_norm", "qk_norm"), ("norm", "scale_attn_norm")):
        if not isinstance(getattr(attn, attr, nn.Identity()), nn.Identity):
            raise refuse(model, what)
    if type(mlp).__name__ != "Mlp" or not isinstance(
        getattr(mlp, "norm", nn.Identity()), nn.Identity
    ):
        raise refuse(model, f"mlp_layer={type(mlp).__name__} (or scale_mlp_norm)")
    if mlp.fc1.bias is None:
        raise refuse(model, "mlp without bias")
    eps = layernorm_eps(model, first.norm1, "block norm")
    layer_scale = None
    if not isinstance(first.ls1, nn.Identity):
        layer_scale = (
            float(first.ls1.gamma.detach().flatten()[0].float())
            if (first.ls1.gamma.device.type != "meta")
            else 1e-5
        )
    entry: dict[str, Any] = {
        "id": "blocks",
        "kind": "encoder_layer",
        "repeat": len(blocks),
        "heads": attn.num_heads,
        "head_dim": attn.head_dim,
        "qkv_bias": attn.qkv.bias is not None,
        "proj_bias": attn.proj.bias is not None,
        "mlp_ratio": mlp.fc1.out_features / mlp.fc1.in_features,
        "act": activation_name(model, mlp.act, "mlp act_layer"),
        "norm_eps": eps,
        "layer_scale": layer_scale,
        "attn_drop": float(attn.attn_drop.p),
        "proj_drop": float(attn.proj_drop.p),
    }
    rates = [drop_rate(b.drop_path1) for b in blocks]
    if any(rates):
        entry["at"] = {i: {"drop_path": r} for i, r in enumerate(rates)}
    return entry
