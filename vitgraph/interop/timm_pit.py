"""timm's PoolingVisionTransformer (PiT, arXiv:2103.16302) as a vitgraph spec.

Node ids follow timm's module names, so every key but two is the same: the patch conv
(``patch_embed.conv`` in timm, ``patch_embed.proj`` here) and the position table, which
timm stores on the grid ``(1, D, rows, cols)`` and vitgraph as tokens ``(1, rows*cols, D)``.
"""

from __future__ import annotations

from typing import Any

import torch
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


@timm_converter("PoolingVisionTransformer")
def convert_pit(model: Reference) -> Conversion:
    conv: nn.Conv2d = model.patch_embed.conv
    if conv.kernel_size[0] != conv.kernel_size[1]:
        raise refuse(model, f"patch_size={conv.kernel_size}", "only square patches")
    if conv.stride[0] != conv.stride[1]:
        raise refuse(model, f"stride={conv.stride}", "only square strides")
    if model.global_pool != "token":
        raise refuse(model, f"global_pool='{model.global_pool}'", "unpooled token outputs")
    if not isinstance(model.head, nn.Linear):
        raise refuse(model, "num_classes=0", "a model without a classifier head")
    graph: list[dict[str, Any]] = [
        {
            "id": "patch_embed",
            "kind": "patch_embed",
            "patch": conv.kernel_size[0],
            "stride": conv.stride[0],
            "padding": conv.padding[0],
            "dim": conv.out_channels,
        },
        {"id": "pos_embed", "kind": "learned_pos"},
    ]
    if drop_rate(model.pos_drop):
        graph.append({"id": "pos_drop", "kind": "dropout", "rate": drop_rate(model.pos_drop)})
    graph.append(
        {
            "id": "cls_token",
            "kind": "cls_token",
            "tokens": model.cls_token.shape[1],
            "init_std": 0.02,
        }
    )
    stages = list(model.transformers)
    total = sum(len(s.blocks) for s in stages)
    rates = [drop_rate(b.drop_path1) for s in stages for b in s.blocks]
    rate = max(rates) if rates else 0.0
    if any(abs(r - rate * i / max(total - 1, 1)) > 1e-6 for i, r in enumerate(rates)):
        raise refuse(model, "a drop-path schedule that is not linear over the blocks")
    first, width, per_stage = 0, conv.out_channels, {}
    for index, stage in enumerate(stages):
        per_stage[index] = _stage(model, index, stage, width, first, total, rate)
        first += len(stage.blocks)
        width = stage.blocks[0].attn.qkv.in_features
    graph.append(
        {
            "id": "transformers",
            "kind": "pit_stage",
            "repeat": len(stages),
            "depth": 1,
            "heads": 1,
            "at": per_stage,
        }
    )
    eps = layernorm_eps(model, model.norm, "norm")
    graph += [{"id": "norm", "kind": "layernorm", "eps": eps}, {"id": "pool", "kind": "take_cls"}]
    if drop_rate(model.head_drop):
        graph.append({"id": "head_drop", "kind": "dropout", "rate": drop_rate(model.head_drop)})
    graph.append({"id": "head", "kind": "linear_head", "classes": model.head.out_features})
    if model.head_dist is not None:
        head_dist: dict[str, Any] = {"id": "head_dist", "kind": "distill_head"}
        if drop_rate(model.head_drop):  # timm drops each token in turn: class, distillation
            head_dist["drop"] = drop_rate(model.head_drop)
        graph.append({**head_dist, "inputs": ["head", "norm"]})
    size = tuple(model.patch_embed.img_size)
    spec = spec_document(
        model.pretrained_cfg.get("architecture", "pit")
        if hasattr(model, "pretrained_cfg")
        else "pit",
        size,
        conv.in_channels,
        graph,
    )

    def after_build(theirs: Reference, ours: Reference) -> None:
        if theirs.head_dist is not None:
            ours.set_distilled_training(bool(theirs.distilled_training))

    return Conversion(spec, rename=_rename, convert=_convert, after_build=after_build)


def _stage(
    model: Reference, index: int, stage: Reference, width: int, first: int, total: int, rate: float
) -> dict[str, Any]:
    if not isinstance(stage.norm, nn.Identity):
        raise refuse(model, f"a norm at the start of stage {index}")
    block = stage.blocks[0]
    attn, mlp = block.attn, block.mlp
    if type(block).__name__ != "Block" or not isinstance(block.ls1, nn.Identity):
        raise refuse(model, f"stage {index} block {type(block).__name__} with LayerScale")
    dim = attn.qkv.in_features
    entry: dict[str, Any] = {
        "pool": stage.pool is not None,
        "depth": len(stage.blocks),
        "heads": attn.num_heads,
        "head_dim": attn.head_dim,
        "qkv_bias": attn.qkv.bias is not None,
        "mlp_ratio": width_ratio(mlp.fc1.out_features, mlp.fc1.in_features),
        "attn_drop": float(attn.attn_drop.p),
        "proj_drop": float(attn.proj_drop.p),
        "norm_eps": layernorm_eps(model, block.norm1, "block norm"),
        "drop_path_rate": rate,
        "first": first,
        "total": total,
    }
    if activation_name(model, mlp.act, "mlp act_layer") != "gelu":
        raise refuse(model, "an mlp activation other than GELU")
    if stage.pool is not None:
        pool = stage.pool
        if pool.conv.stride[0] + 1 != pool.conv.kernel_size[0] or dim != 2 * width:
            raise refuse(
                model,
                f"base_dims and heads making stage {index} {dim} wide after {width}",
                "PiT's pooling doubles the width",
            )
        if pool.conv.padding_mode != "zeros":
            raise refuse(model, f"pooling padding_mode='{pool.conv.padding_mode}'")
        if pool.conv.stride[0] != 2:
            raise refuse(model, f"pooling stride {pool.conv.stride[0]} (PiT pools by 2)")
    return entry


def _rename(key: str) -> str:
    return key.replace("patch_embed.conv.", "patch_embed.proj.")


def _convert(key: str, tensor: torch.Tensor) -> torch.Tensor:
    if key == "pos_embed":  # (1, D, rows, cols) -> (1, rows*cols, D)
        return tensor.flatten(2).transpose(1, 2)
    return tensor
