"""timm's VisionTransformer and VisionTransformerDistilled (ViT, DeiT, DeiT III, the
avg-pooled and no-class-token configurations) as vitgraph specs.

Every constructor argument is read off the module and honoured, or refused naming it
(``vitgraph.interop.options`` lists each and the issue that builds what is refused).
"""

from __future__ import annotations

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


@timm_converter("VisionTransformer", "VisionTransformerDistilled")
def convert_vit(model: Reference) -> Conversion:
    distilled = getattr(model, "head_dist", None) is not None
    _refuse_unsupported(model, distilled)
    embed = model.patch_embed
    proj: nn.Conv2d = embed.proj
    if proj.kernel_size[0] != proj.kernel_size[1]:
        raise refuse(model, f"patch_size={proj.kernel_size}", "only square patches")
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
    embed_norm = layernorm_eps(model, embed.norm, "embed_norm_layer")
    if embed_norm is not None:
        graph[0].update(norm=True, norm_eps=embed_norm)
    if getattr(model, "cls_token", None) is not None:
        graph.append({"id": "cls_token", "kind": "cls_token"})
    if distilled:
        graph.append({"id": "dist_token", "kind": "dist_token"})
    if getattr(model, "pos_embed", None) is not None:
        graph.append(
            {"id": "pos_embed", "kind": "learned_pos", "include_prefix": not model.no_embed_class}
        )
    if drop_rate(model.pos_drop):
        graph.append({"id": "pos_drop", "kind": "dropout", "rate": drop_rate(model.pos_drop)})
    # pre_norm=True (CLIP, Radford et al. 2021 §2.4): a LayerNorm after the position
    # table, before the blocks
    pre_eps = layernorm_eps(model, getattr(model, "norm_pre", nn.Identity()), "norm_layer")
    if pre_eps is not None:
        graph.append({"id": "norm_pre", "kind": "layernorm", "eps": pre_eps})
    graph.append(_blocks(model))
    final_eps = layernorm_eps(model, model.norm, "norm_layer")
    if final_eps is not None:
        graph.append({"id": "norm", "kind": "layernorm", "eps": final_eps})
    features = "norm" if final_eps is not None else "blocks"
    unused: frozenset[str] = frozenset()
    if distilled:
        # timm's distilled head reads the class and distillation tokens straight from the
        # blocks (after `norm`): no pooling, and the fc_norm that fc_norm=True builds is
        # never applied (VisionTransformerDistilled.forward_head), so it is left out
        unused = frozenset(k for k in model.state_dict() if k.startswith("fc_norm."))
        graph.append({"id": "pool", "kind": "take_cls"})
        graph += _head(model)
        head_dist: dict[str, Any] = {"id": "head_dist", "kind": "distill_head"}
        if drop_rate(model.head_drop):
            head_dist["drop"] = drop_rate(model.head_drop)
        graph.append({**head_dist, "inputs": ["head", features]})
    else:
        graph += _pool(model)
        fc_eps = layernorm_eps(model, model.fc_norm, "norm_layer")
        if fc_eps is not None:
            graph.append({"id": "fc_norm", "kind": "layernorm", "eps": fc_eps})
        graph += _head(model)
    spec = spec_document(model_name(model), tuple(embed.img_size), proj.in_channels, graph)

    def after_build(theirs: Reference, ours: Reference) -> None:
        ours.set_distilled_training(bool(getattr(theirs, "distilled_training", False)))

    return Conversion(spec, after_build=after_build, unused=unused)


def _refuse_unsupported(model: Reference, distilled: bool) -> None:
    """The options vitgraph has no block for yet, by the module they build."""
    if getattr(model, "reg_token", None) is not None:
        raise refuse(model, f"reg_tokens={model.reg_token.shape[1]}", "register tokens")
    pool = getattr(model, "attn_pool", None)
    if pool is not None:
        kind = "map" if type(pool).__name__ == "AttentionPoolLatent" else "prr"
        raise refuse(model, f"global_pool='{kind}'", f"attention pooling {type(pool).__name__}")
    if getattr(model, "dynamic_img_size", False):
        raise refuse(model, "dynamic_img_size=True", "position table resampled per input")
    embed = model.patch_embed
    if type(embed).__name__ != "PatchEmbed":
        raise refuse(model, f"embed_layer={type(embed).__name__}", "hybrid CNN stems")
    if getattr(embed, "dynamic_img_pad", False):
        raise refuse(model, "dynamic_img_pad=True", "inputs padded to a patch multiple")
    if not getattr(embed, "flatten", True) or getattr(embed, "output_fmt", None) not in (
        None,
        "NCHW",
    ):
        raise refuse(model, f"embed_layer with output_fmt={embed.output_fmt}")
    proj = embed.proj
    if proj.kernel_size != proj.stride or proj.padding != (0, 0) or proj.dilation != (1, 1):
        raise refuse(model, "embed_layer with an overlapping patch embedding")
    if not isinstance(getattr(model, "patch_drop", nn.Identity()), nn.Identity):
        raise refuse(model, f"patch_drop_rate={model.patch_drop.prob}", "patch dropout")
    if distilled and model.no_embed_class and model.pos_embed.shape[1] != embed.num_patches:
        # VisionTransformerDistilled re-creates the table with rows for the prefix tokens,
        # then adds it to the patch tokens alone: timm's own forward fails
        raise refuse(model, "no_embed_class=True", "timm's distilled model cannot run it")
    if len(model.blocks) == 0:
        raise refuse(model, "depth=0")


def _pool(model: Reference) -> list[dict[str, Any]]:
    pool = model.global_pool
    if pool == "token":
        return [{"id": "pool", "kind": "take_cls"}]
    if pool == "avg":
        # pool_include_prefix: timm averages the class (and other prefix) tokens too
        include = bool(getattr(model, "pool_include_prefix", False))
        return [{"id": "pool", "kind": "mean_pool", "include_prefix": include}]
    if pool == "":
        raise refuse(model, "global_pool=''", "unpooled token outputs")
    raise refuse(model, f"global_pool='{pool}'")


def _head(model: Reference) -> list[dict[str, Any]]:
    graph: list[dict[str, Any]] = []
    if drop_rate(model.head_drop):
        graph.append({"id": "head_drop", "kind": "dropout", "rate": drop_rate(model.head_drop)})
    if not isinstance(model.head, nn.Linear):
        raise refuse(model, "num_classes=0", "a model without a classifier head")
    graph.append({"id": "head", "kind": "linear_head", "classes": model.head.out_features})
    return graph


def _blocks(model: Reference) -> dict[str, Any]:
    blocks = list(model.blocks)
    first = blocks[0]
    if type(first).__name__ != "Block":
        raise refuse(model, f"block_fn={type(first).__name__}")
    attn, mlp = first.attn, first.mlp
    if type(attn).__name__ != "Attention":
        raise refuse(model, f"attn_layer={type(attn).__name__}")
    if not isinstance(getattr(attn, "q_norm", nn.Identity()), nn.Identity):
        raise refuse(model, "qk_norm=True", "normalized queries and keys")
    if not isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity):
        raise refuse(model, "scale_attn_norm=True", "a norm inside the attention")
    if type(mlp).__name__ != "Mlp":
        raise refuse(model, f"mlp_layer={type(mlp).__name__}")
    if not isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity):
        raise refuse(model, "scale_mlp_norm=True", "a norm inside the MLP")
    if mlp.fc1.bias is None or attn.proj.bias is None:
        raise refuse(model, "proj_bias=False", "bias-free projection and MLP layers")
    eps = layernorm_eps(model, first.norm1, "norm_layer")
    layer_scale = None
    if not isinstance(first.ls1, nn.Identity):
        layer_scale = 1e-5  # any value: the weights are copied over it
    entry: dict[str, Any] = {
        "id": "blocks",
        "kind": "encoder_layer",
        "repeat": len(blocks),
        "heads": attn.num_heads,
        "head_dim": attn.head_dim,
        "qkv_bias": attn.qkv.bias is not None,
        "proj_bias": attn.proj.bias is not None,
        "mlp_ratio": width_ratio(mlp.fc1.out_features, mlp.fc1.in_features),
        "act": activation_name(model, mlp.act, "act_layer"),
        "norm_eps": eps,
        "layer_scale": layer_scale,
        "attn_drop": float(attn.attn_drop.p),
        "proj_drop": float(attn.proj_drop.p),
    }
    rates = [drop_rate(b.drop_path1) for b in blocks]
    if any(rates):
        entry["at"] = {i: {"drop_path": r} for i, r in enumerate(rates)}
    return entry
