"""timm's VisionTransformer and VisionTransformerDistilled (ViT, DeiT, DeiT III, the
avg-pooled and no-class-token configurations, and the modern options of #23: register
tokens, qk-norm, RMSNorm, bias-free linears, gated MLPs, MAP / max / avgmax pooling,
patch dropout) as vitgraph specs.

Every constructor argument is read off the module and honoured, or refused naming it
(``vitgraph.interop.options`` lists each and the issue that builds what is refused).
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
    norm_of,
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
    if getattr(embed, "dynamic_img_pad", False):  # padded to a patch multiple
        graph[0]["dynamic_pad"] = True
    embed_norm = layernorm_eps(model, embed.norm, "embed_norm_layer")
    if embed_norm is not None:
        graph[0].update(norm=True, norm_eps=embed_norm)
    if getattr(model, "cls_token", None) is not None:
        graph.append({"id": "cls_token", "kind": "cls_token"})
    if distilled:
        graph.append({"id": "dist_token", "kind": "dist_token"})
    if getattr(model, "reg_token", None) is not None:
        # registers (Darcet et al. 2023 §2.2) after the class token, as timm's _pos_embed
        graph.append({"id": "reg_token", "kind": "reg_token", "tokens": model.reg_token.shape[1]})
    if getattr(model, "pos_embed", None) is not None:
        pos: dict[str, Any] = {
            "id": "pos_embed",
            "kind": "learned_pos",
            "include_prefix": not model.no_embed_class,
        }
        if getattr(model, "dynamic_img_size", False):  # the table resized to each input
            pos.update(dynamic=True, inputs=[graph[-1]["id"], "input"])
            pos.update(dynamic_pad=bool(getattr(embed, "dynamic_img_pad", False)))
        graph.append(pos)
    if drop_rate(model.pos_drop):
        graph.append({"id": "pos_drop", "kind": "dropout", "rate": drop_rate(model.pos_drop)})
    patch_drop = getattr(model, "patch_drop", nn.Identity())
    if not isinstance(patch_drop, nn.Identity):
        # training only: the patch tokens each sample keeps (prefix tokens always)
        graph.append(
            {
                "id": "patch_drop",
                "kind": "patch_dropout",
                "rate": float(patch_drop.prob),
                "ordered": bool(patch_drop.ordered),
            }
        )
    # pre_norm=True (CLIP, Radford et al. 2021 §2.4): a norm after the position
    # table, before the blocks
    graph += _norm(model, getattr(model, "norm_pre", nn.Identity()), "norm_pre")
    graph.append(_blocks(model))
    final = _norm(model, model.norm, "norm")
    graph += final
    features = "norm" if final else "blocks"
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
        graph += _norm(model, model.fc_norm, "fc_norm")
        graph += _head(model)
    spec = spec_document(model_name(model), tuple(embed.img_size), proj.in_channels, graph)

    def after_build(theirs: Reference, ours: Reference) -> None:
        ours.set_distilled_training(bool(getattr(theirs, "distilled_training", False)))

    rename = _parallel_key if graph_has(graph, "parallel_layer") else (lambda key: key)
    return Conversion(spec, rename=rename, after_build=after_build, unused=unused)


def graph_has(graph: list[dict[str, Any]], kind: str) -> bool:
    return any(entry["kind"] == kind for entry in graph)


def _refuse_unsupported(model: Reference, distilled: bool) -> None:
    """The options vitgraph has no block for yet, by the module they build."""
    pool = getattr(model, "attn_pool", None)
    if pool is not None and type(pool).__name__ != "AttentionPoolLatent":
        raise refuse(model, "global_pool='prr'", f"attention pooling {type(pool).__name__}")
    if getattr(model, "dynamic_img_size", False) and getattr(model, "pos_embed", None) is None:
        raise refuse(model, "dynamic_img_size=True without a position table")
    embed = model.patch_embed
    if type(embed).__name__ != "PatchEmbed":
        raise refuse(model, f"embed_layer={type(embed).__name__}", "hybrid CNN stems")
    # dynamic_img_size: timm's embedding keeps the NHWC map for _pos_embed to read the grid
    # off (vitgraph's table reads it off the image), then flattens it as ours does
    nhwc_for_dynamic = getattr(model, "dynamic_img_size", False) and embed.output_fmt == "NHWC"
    if not nhwc_for_dynamic and (
        not getattr(embed, "flatten", True)
        or getattr(embed, "output_fmt", None) not in (None, "NCHW")
    ):
        raise refuse(model, f"embed_layer with output_fmt={embed.output_fmt}")
    proj = embed.proj
    if proj.kernel_size != proj.stride or proj.padding != (0, 0) or proj.dilation != (1, 1):
        raise refuse(model, "embed_layer with an overlapping patch embedding")
    patch_drop = getattr(model, "patch_drop", nn.Identity())
    if not isinstance(patch_drop, nn.Identity) and type(patch_drop).__name__ != "PatchDropout":
        raise refuse(model, f"patch_drop_rate with {type(patch_drop).__name__}")
    if distilled and getattr(model, "reg_token", None) is not None:
        # VisionTransformerDistilled's _pos_embed concatenates the class and
        # distillation tokens only: the registers it builds never reach the blocks
        raise refuse(
            model,
            f"reg_tokens={model.reg_token.shape[1]}",
            "timm's distilled model never adds them",
        )
    if distilled and not isinstance(patch_drop, nn.Identity):
        # built before the distilled model sets two prefix tokens: timm may drop the
        # distillation token its head reads
        raise refuse(
            model,
            f"patch_drop_rate={patch_drop.prob}",
            "timm's distilled model may drop its distillation token",
        )
    if distilled and model.no_embed_class and model.pos_embed.shape[1] != embed.num_patches:
        # VisionTransformerDistilled re-creates the table with rows for the prefix tokens,
        # then adds it to the patch tokens alone: timm's own forward fails
        raise refuse(model, "no_embed_class=True", "timm's distilled model cannot run it")
    if len(model.blocks) == 0:
        raise refuse(model, "depth=0")


def _norm(model: Reference, norm: Reference, node: str) -> list[dict[str, Any]]:
    """The node of one of the model's norms (``norm_pre``, ``norm``, ``fc_norm``): none for
    Identity; LayerNorm and RMSNorm as timm's ``norm_layer`` builds them."""
    found = norm_of(model, norm, "norm_layer")
    return [] if found is None else [{"id": node, "kind": found[0], "eps": found[1]}]


#: timm's global_pool names of the token reductions, and vitgraph's kinds
_REDUCTIONS = {"avg": "mean_pool", "max": "max_pool", "avgmax": "avgmax_pool"}


def _pool(model: Reference) -> list[dict[str, Any]]:
    pool = model.global_pool
    # pool_include_prefix: timm reduces over the class (and other prefix) tokens too
    include = bool(getattr(model, "pool_include_prefix", False))
    if pool == "token":
        return [{"id": "pool", "kind": "take_cls"}]
    if pool in _REDUCTIONS:
        return [{"id": "pool", "kind": _REDUCTIONS[pool], "include_prefix": include}]
    if pool == "map":
        return [_map_pool(model, model.attn_pool, include)]
    if pool == "":
        raise refuse(model, "global_pool=''", "unpooled token outputs")
    raise refuse(model, f"global_pool='{pool}'")


def _map_pool(model: Reference, pool: Reference, include: bool) -> dict[str, Any]:
    """timm's AttentionPoolLatent as VisionTransformer builds it (one latent, a query
    projection, no qk-norm, no position table; SigLIP's head)."""
    if (
        pool.latent_len != 1
        or pool.pos_embed is not None
        or not isinstance(pool.q, nn.Linear)
        or not isinstance(pool.q_norm, nn.Identity)
        or pool.mlp is None
        or pool.q.in_features != pool.kv.in_features
        or pool.pool != "token"
    ):
        raise refuse(model, "global_pool='map' with an AttentionPoolLatent of other settings")
    entry: dict[str, Any] = {
        "id": "attn_pool",
        "kind": "map_pool",
        "heads": pool.num_heads,
        "mlp_ratio": width_ratio(pool.mlp.fc1.out_features, pool.mlp.fc1.in_features),
        "qkv_bias": pool.kv.bias is not None,
        "act": activation_name(model, pool.mlp.act, "act_layer"),
        "include_prefix": include,
    }
    found = norm_of(model, pool.norm, "norm_layer")
    entry.update(norm=None, norm_eps=1e-6) if found is None else entry.update(
        norm=found[0], norm_eps=found[1]
    )
    return entry


def _head(model: Reference) -> list[dict[str, Any]]:
    graph: list[dict[str, Any]] = []
    if drop_rate(model.head_drop):
        graph.append({"id": "head_drop", "kind": "dropout", "rate": drop_rate(model.head_drop)})
    if not isinstance(model.head, nn.Linear):
        raise refuse(model, "num_classes=0", "a model without a classifier head")
    graph.append({"id": "head", "kind": "linear_head", "classes": model.head.out_features})
    return graph


#: timm's ParallelThingsBlock keys (``blocks.3.attns.1.norm.weight``) and parallel_layer's
_PARALLEL_KEYS = re.compile(r"^(blocks\.\d+)\.(attn|ffn)s\.(\d)\.(norm|ls|attn|mlp)\.")


def _parallel_key(key: str) -> str:
    def ours(match: re.Match[str]) -> str:
        branch = f"{match[1]}.{match[2]}{match[3]}"
        return f"{branch}." if match[4] in ("attn", "mlp") else f"{branch}_{match[4]}."

    return _PARALLEL_KEYS.sub(ours, key)


def _branches(model: Reference, block: Reference) -> tuple[Any, Any, Any, Any, Any]:
    """A block's attention, MLP, first norm, first LayerScale and first drop-path: those
    of timm's Block, or of the first branches of a ParallelThingsBlock (Touvron et al.
    2022 §3: its branches are alike)."""
    cls = type(block).__name__
    if cls == "Block":
        return block.attn, block.mlp, block.norm1, block.ls1, block.drop_path1
    if cls == "ParallelThingsBlock":
        if block.num_parallel != 2:
            raise refuse(
                model, f"block_fn=ParallelThingsBlock with num_parallel={block.num_parallel}"
            )
        attn, ffn = block.attns[0], block.ffns[0]
        return attn.attn, ffn.mlp, attn.norm, attn.ls, attn.drop_path
    raise refuse(model, f"block_fn={cls}")


def _blocks(model: Reference) -> dict[str, Any]:
    blocks = list(model.blocks)
    first = blocks[0]
    attn, mlp, norm1, ls1, _ = _branches(model, first)
    if type(attn).__name__ != "Attention":
        raise refuse(model, f"attn_layer={type(attn).__name__}")
    if not isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity):
        raise refuse(model, "scale_attn_norm=True", "a norm inside the attention")
    if getattr(attn, "gate", None) is not None:
        raise refuse(model, "attn_layer with gated=True", "a sigmoid-gated attention output")
    if not isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity):
        raise refuse(model, "scale_mlp_norm=True", "a norm inside the MLP")
    norm = norm_of(model, norm1, "norm_layer")
    assert norm is not None  # timm's blocks always build their norms
    qk_norm = norm_of(model, getattr(attn, "q_norm", nn.Identity()), "norm_layer")
    layer_scale = None
    if not isinstance(ls1, nn.Identity):
        layer_scale = 1e-5  # any value: the weights are copied over it
    parallel = type(first).__name__ == "ParallelThingsBlock"
    entry: dict[str, Any] = {
        "id": "blocks",
        "kind": "parallel_layer" if parallel else "encoder_layer",
        "repeat": len(blocks),
        "heads": attn.num_heads,
        "head_dim": attn.head_dim,
        "qkv_bias": attn.qkv.bias is not None,
        "proj_bias": attn.proj.bias is not None,
        **_mlp(model, mlp),
        "norm": norm[0],
        "norm_eps": norm[1],
        "qk_norm": None if qk_norm is None else qk_norm[0],
        "qk_norm_eps": None if qk_norm is None else qk_norm[1],
        "layer_scale": layer_scale,
        "attn_drop": float(attn.attn_drop.p),
        "proj_drop": float(attn.proj_drop.p),
    }
    rates = [drop_rate(_branches(model, b)[4]) for b in blocks]
    if any(rates):
        entry["at"] = {i: {"drop_path": r} for i, r in enumerate(rates)}
    return entry


def _mlp(model: Reference, mlp: Reference) -> dict[str, Any]:
    """encoder_layer's MLP options for timm's ``Mlp``, ``GluMlp`` (``SwiGLUPacked``: the
    gated product's halves packed in one ``fc1``) and ``SwiGLU`` (``fc1_g``, ``fc1_x``)."""
    cls = type(mlp).__name__
    act = activation_name(model, mlp.act, "act_layer")
    if cls == "Mlp":
        first = mlp.fc1
        entry: dict[str, Any] = {"mlp_ratio": width_ratio(first.out_features, first.in_features)}
    elif cls in ("GluMlp", "SwiGLU"):
        first = mlp.fc1 if cls == "GluMlp" else mlp.fc1_g
        if not isinstance(first, nn.Linear):
            raise refuse(model, f"mlp_layer={cls} with use_conv=True")
        hidden = mlp.fc2.in_features
        entry = {"mlp": "glu_mlp", "mlp_ratio": width_ratio(hidden, first.in_features)}
        if cls == "GluMlp":
            entry.update(mlp_packed=True, mlp_gate_last=bool(mlp.gate_last))
    else:
        raise refuse(model, f"mlp_layer={cls}")
    if (first.bias is None) != (mlp.fc2.bias is None):
        raise refuse(model, f"mlp_layer={cls} with a bias in one layer only")
    return {**entry, "act": act, "mlp_bias": first.bias is not None}
