"""timm's Eva (EVA-02, arXiv:2303.11331, and the EVA-style options of its constructor) as
a vitgraph spec: ``encoder_layer`` with ``eva_attention`` (q and v biases, fused or
separate projections, RoPE as timm's ``RotaryEmbeddingCat``), the gated MLPs with their
sub-LN, and ViT's embedding, pooling and head nodes.

Node ids follow timm's module names; LayerScale's ``gamma_1``/``gamma_2`` are
``ls1.gamma``/``ls2.gamma`` here. Every constructor argument is honoured or refused by
name (``vitgraph.interop.options_timm.EVA``).
"""

from __future__ import annotations

import re
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


@timm_converter("Eva")
def convert_eva(model: Reference) -> Conversion:
    _refuse_unsupported(model)
    embed = model.patch_embed
    proj: nn.Conv2d = embed.proj
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
    if model.reg_token is not None:
        graph.append({"id": "reg_token", "kind": "reg_token", "tokens": model.reg_token.shape[1]})
    if model.pos_embed is not None:
        graph.append(
            {"id": "pos_embed", "kind": "learned_pos", "include_prefix": not model.no_embed_class}
        )
    if drop_rate(model.pos_drop):
        graph.append({"id": "pos_drop", "kind": "dropout", "rate": drop_rate(model.pos_drop)})
    graph += _norm(model, model.norm_pre, "norm_pre")
    graph.append(_blocks(model))
    graph += _norm(model, model.norm, "norm")
    graph += _pool(model)
    graph += _norm(model, model.fc_norm, "fc_norm")
    graph += _head(model)
    spec = spec_document(model_name(model), tuple(embed.img_size), proj.in_channels, graph)
    return Conversion(spec, rename=_rename)


_GAMMA = re.compile(r"^(blocks\.\d+)\.gamma_([12])$")


def _rename(key: str) -> str:
    """timm's LayerScale parameters (``blocks.3.gamma_1``) as the layer_scale nodes'."""
    return _GAMMA.sub(r"\1.ls\2.gamma", key)


def _refuse_unsupported(model: Reference) -> None:
    """The options vitgraph has no block for yet, by the module they build."""
    if model.dynamic_img_size:
        raise refuse(model, "dynamic_img_size=True", "position tables built per input")
    embed = model.patch_embed
    if getattr(embed, "dynamic_img_pad", False):
        raise refuse(model, "dynamic_img_pad=True", "inputs padded to a patch multiple")
    proj = embed.proj
    if proj.kernel_size[0] != proj.kernel_size[1]:
        raise refuse(model, f"patch_size={proj.kernel_size}", "only square patches")
    if model.patch_drop is not None:
        raise refuse(
            model, f"patch_drop_rate={model.patch_drop.prob}", "RoPE gathered per kept patch"
        )
    if model.attn_pool is not None:
        raise refuse(
            model,
            "global_pool='map' (with attn_pool_num_heads, attn_pool_mlp_ratio)",
            "Eva's attention pooling",
        )
    if not model.blocks:
        raise refuse(model, "depth=0")
    block = model.blocks[0]
    if type(block).__name__ == "EvaBlockPostNorm":
        raise refuse(model, "use_post_norm=True", "EVA's post-norm blocks")
    if type(block.attn).__name__ != "EvaAttention":
        kv_heads = getattr(block.attn, "num_kv_heads", block.attn.num_heads)
        if kv_heads != block.attn.num_heads:
            raise refuse(model, f"num_kv_heads={kv_heads}", "grouped-query attention")
        raise refuse(model, "attn_type='rope'", "timm's AttentionRope")
    if block.attn.gate is not None:
        raise refuse(model, "gated_attn=True", "a sigmoid-gated attention output")
    if block.gamma_1 is not None and block.gamma_2 is None:
        raise refuse(model, "attn_only_layer_scale=True", "LayerScale on one branch only")


def _rope(model: Reference) -> dict[str, Any]:
    """encoder_layer's RoPE options for timm's ``RotaryEmbeddingCat`` (rope_type 'cat',
    token-index positions), refused by name for its other settings."""
    rope = model.rope
    if rope is None:
        return {}
    cls = type(rope).__name__
    if cls == "RotaryEmbeddingMRope":
        raise refuse(model, "rope_type='mrope' (and its rope_mrope_section)", "multimodal RoPE")
    if cls != "RotaryEmbeddingCat":
        raise refuse(model, f"rope_type={cls}", "only rope_type='cat'")
    if rope.grid_type != "index":
        raise refuse(model, f"rope_type='cat' with grid_type='{rope.grid_type}'")
    if rope.grid_offset:
        raise refuse(model, f"rope_grid_offset={rope.grid_offset}")
    if rope.grid_indexing != "ij":
        raise refuse(model, f"rope_grid_indexing='{rope.grid_indexing}'")
    if rope.rotate_half:
        raise refuse(model, "rope_rotate_half=True", "only the interleaved pairs")
    for option in ("shift_coords", "jitter_coords", "rescale_coords"):
        if getattr(rope, option, None) is not None:
            raise refuse(model, f"rope_{option}={getattr(rope, option)}", "train-time RoPE noise")
    ref = rope.ref_feat_shape
    if ref is not None and ref[0] != ref[1]:
        raise refuse(model, f"ref_feat_shape={tuple(ref)}", "only square reference grids")
    return {
        "rope": True,
        "rope_ref_grid": None if ref is None else int(ref[0]),
        "rope_temperature": float(rope.temperature),
    }


def _blocks(model: Reference) -> dict[str, Any]:
    blocks = list(model.blocks)
    first = blocks[0]
    attn, mlp = first.attn, first.mlp
    norm = norm_of(model, first.norm1, "norm_layer")
    assert norm is not None  # timm's blocks always build their norms
    qk_norm = norm_of(model, attn.q_norm, "norm_layer")
    inner = norm_of(model, attn.norm, "norm_layer")
    sub_ln = norm_of(model, mlp.norm, "norm_layer")
    for found, option in ((inner, "scale_attn_inner"), (sub_ln, "scale_mlp")):
        # the inner norms are LayerNorms of eps 1e-6 (eva_attention's and glu_mlp's)
        if found is not None and found != ("layernorm", 1e-6):
            raise refuse(model, f"{option}=True with norm_layer {found[0]} eps {found[1]}")
    fused = attn.qkv is not None
    entry: dict[str, Any] = {
        "id": "blocks",
        "kind": "encoder_layer",
        "repeat": len(blocks),
        "attention": "eva_attention",
        "heads": attn.num_heads,
        "head_dim": attn.head_dim,
        "qkv_fused": fused,
        "qkv_bias": (attn.q_bias if fused else attn.q_proj.bias) is not None,
        "proj_bias": attn.proj.bias is not None,
        "inner_norm": inner is not None,
        **_mlp(model, mlp),
        "norm": norm[0],
        "norm_eps": norm[1],
        "qk_norm": None if qk_norm is None else qk_norm[0],
        "qk_norm_eps": None if qk_norm is None else qk_norm[1],
        "layer_scale": None if first.gamma_1 is None else 1e-5,  # the weights replace it
        "attn_drop": float(attn.attn_drop.p),
        "proj_drop": float(attn.proj_drop.p),
        **_rope(model),
    }
    if sub_ln is not None:
        if entry.get("mlp") != "glu_mlp":
            raise refuse(model, "scale_mlp=True without swiglu_mlp", "a norm inside a plain MLP")
        entry["mlp_norm"] = True
    rates = [drop_rate(b.drop_path1) for b in blocks]
    if any(rates):
        entry["at"] = {i: {"drop_path": r} for i, r in enumerate(rates)}
    return entry
