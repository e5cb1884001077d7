"""timm's CrossVit (CrossViT, CrossViT†) as a vitgraph spec of two branches.

timm keeps each branch's modules in lists indexed 0 (small patch) and 1 (large patch);
the spec names them ``*_small`` / ``*_large``. ``_rename`` maps one onto the other.
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

BRANCH = {"0": "small", "1": "large"}


@timm_converter("CrossVit")
def convert_crossvit(model: Reference) -> Conversion:
    if model.num_branches != 2:
        raise refuse(
            model, f"patch_size with {model.num_branches} branches", "CrossViT's spec has two"
        )
    if model.crop_scale:
        raise refuse(model, "crop_scale=True", "center crops in place of resizing")
    if model.global_pool not in ("token", "avg"):
        raise refuse(model, f"global_pool='{model.global_pool}'", "unpooled token outputs")
    pool = "take_cls" if model.global_pool == "token" else "mean_pool"
    size = tuple(model.img_size)
    graph: list[dict[str, Any]] = []
    for index, embed in enumerate(model.patch_embed):
        branch = BRANCH[str(index)]
        scaled = tuple(model.img_size_scaled[index])
        if scaled != size:
            graph.append(
                {
                    "id": f"resize_{branch}",
                    "kind": "resize_image",
                    "size": list(scaled),
                    "inputs": ["input"],
                }
            )
        entry = _embed(model, embed, branch)
        if scaled == size:
            entry["inputs"] = ["input"]
        graph += [
            entry,
            {"id": f"cls_token_{branch}", "kind": "cls_token"},
            {"id": f"pos_embed_{branch}", "kind": "learned_pos"},
        ]
        if drop_rate(model.pos_drop):
            graph.append(
                {"id": f"pos_drop_{branch}", "kind": "dropout", "rate": drop_rate(model.pos_drop)}
            )
    graph.append(_encoders(model, graph))
    for index, norm in enumerate(model.norm):
        branch = BRANCH[str(index)]
        if not isinstance(model.head[index], nn.Linear):
            raise refuse(model, "num_classes=0", "a model without a classifier head")
        graph += [
            {
                "id": f"norm_{branch}",
                "kind": "layernorm",
                "eps": layernorm_eps(model, norm, "norm_layer"),
                "inputs": [f"blocks.{branch}"],  # the last encoder's output of the branch
            },
            {"id": f"pool_{branch}", "kind": pool},
            {
                "id": f"head_{branch}",
                "kind": "linear_head",
                "classes": model.head[index].out_features,
            },
        ]
        if drop_rate(model.head_drop):
            graph.insert(
                -1,
                {
                    "id": f"head_drop_{branch}",
                    "kind": "dropout",
                    "rate": drop_rate(model.head_drop),
                },
            )
    graph.append({"id": "head", "kind": "average", "inputs": ["head_small", "head_large"]})
    spec = spec_document(
        _name(model), size, model.in_chans, graph, features=["norm_small", "norm_large"]
    )
    return Conversion(spec, rename=_rename)


def _name(model: Reference) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__)


def _embed(model: Reference, embed: Reference, branch: str) -> dict[str, Any]:
    proj = embed.proj
    patch = embed.patch_size[0]
    if isinstance(proj, nn.Sequential):
        return {
            "id": f"patch_embed_{branch}",
            "kind": "multi_conv_embed",
            "patch": patch,
            "dim": proj[-1].out_channels,
        }
    if proj.kernel_size != proj.stride or proj.kernel_size[0] != proj.kernel_size[1]:
        raise refuse(model, f"patch_size={proj.kernel_size}", "only square patches")
    return {
        "id": f"patch_embed_{branch}",
        "kind": "patch_embed",
        "patch": patch,
        "dim": proj.out_channels,
    }


def _encoders(model: Reference, graph: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``blocks`` repeat: every multi-scale encoder's depths, widths and rates."""
    first = model.blocks[0]
    if any(isinstance(f, nn.Sequential) for b in model.blocks for f in b.fusion):
        raise refuse(model, "depth with a fusion depth > 0", "cross-attention layers in sequence")
    shapes = {tuple(len(branch) for branch in b.blocks or ()) for b in model.blocks}
    if len(shapes) != 1 or len(first.blocks or ()) != 2:
        raise refuse(
            model,
            f"depth with branch depths {sorted(shapes)}",
            "every multi-scale block alike, both branches at least one layer deep",
        )
    small, large = first.blocks
    ratios = {
        width_ratio(b[0].mlp.fc1.out_features, b[0].mlp.fc1.in_features) for b in (small, large)
    }
    if len(ratios) != 1:
        raise refuse(model, f"mlp_ratio with branch ratios {sorted(ratios)}", "one ratio")
    layer = small[0]
    if type(layer).__name__ != "Block" or not isinstance(layer.ls1, nn.Identity):
        raise refuse(model, f"encoder layer {type(layer).__name__}")
    act = activation_name(model, layer.mlp.act, "mlp act_layer")
    if act != "gelu" or activation_name(model, first.projs[0][1], "projection act") != "gelu":
        raise refuse(model, f"act_layer={act}")
    entry: dict[str, Any] = {
        "id": "blocks",
        "kind": "crossvit_block",
        "repeat": len(model.blocks),
        # later encoders take the branches of the one before (crossvit_block chains)
        "inputs": [graph_last(graph, "small"), graph_last(graph, "large")],
        "heads_small": small[0].attn.num_heads,
        "heads_large": large[0].attn.num_heads,
        "depth_small": len(small),
        "depth_large": len(large),
        "mlp_ratio": ratios.pop(),
        "qkv_bias": layer.attn.qkv.bias is not None,
        "proj_drop": float(layer.attn.proj_drop.p),
        "attn_drop": float(layer.attn.attn_drop.p),
        "norm_eps": layernorm_eps(model, layer.norm1, "norm_layer"),
    }
    at: dict[int, dict[str, float]] = {}
    for k, block in enumerate(model.blocks):
        rates = [drop_rate(b.drop_path1) for b in block.blocks[1]]
        step = (rates[-1] - rates[0]) / (len(rates) - 1) if len(rates) > 1 else 0.0
        if any(rates) or step:
            at[k] = {"drop_path_start": rates[0], "drop_path_step": step}
    if at:
        entry["at"] = at
    return entry


def graph_last(graph: list[dict[str, Any]], branch: str) -> str:
    """The last node of a branch's embedding (its position table or dropout)."""
    return [e["id"] for e in graph if e["id"].endswith(f"_{branch}")][-1]


_RULES = [
    (r"^patch_embed\.(\d)\.", lambda m: f"patch_embed_{BRANCH[m[1]]}."),
    (r"^(cls_token|pos_embed)_(\d)$", lambda m: f"{m[1]}_{BRANCH[m[2]]}"),
    (r"^blocks\.(\d+)\.blocks\.(\d)\.", lambda m: f"blocks.{m[1]}.blocks_{BRANCH[m[2]]}."),
    (r"^blocks\.(\d+)\.projs\.(\d)\.", lambda m: f"blocks.{m[1]}.fusion_{BRANCH[m[2]]}.proj."),
    (
        r"^blocks\.(\d+)\.revert_projs\.(\d)\.",
        lambda m: f"blocks.{m[1]}.fusion_{BRANCH[m[2]]}.revert.",
    ),
    (r"^blocks\.(\d+)\.fusion\.(\d)\.", lambda m: f"blocks.{m[1]}.fusion_{BRANCH[m[2]]}."),
    (r"^(norm|head)\.(\d)\.", lambda m: f"{m[1]}_{BRANCH[m[2]]}."),
]


def _rename(key: str) -> str:
    for pattern, repl in _RULES:
        key = re.sub(pattern, repl, key)
    return key
