"""timm's Twins (every ``twins_svt_*`` and ``twins_pcpvt_*`` model) as a vitgraph spec:
one ``twins_stage`` per stage (patch embedding, first layer, PEG, remaining layers).

Keys differ from timm's only by the stage layout: timm's ``patch_embeds.k``,
``blocks.k.0``, ``pos_block.k`` and ``blocks.k.j`` (j ≥ 1) are our ``stage{k+1}.patch_embed``,
``stage{k+1}.first``, ``stage{k+1}.pos_block`` and ``stage{k+1}.blocks.{j-1}``.
"""

from __future__ import annotations

import math
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

_KEY = re.compile(r"^(patch_embeds|pos_block|blocks)\.(\d+)\.(?:(\d+)\.)?(.*)$")


def rename(key: str) -> str:
    match = _KEY.match(key)
    if match is None:
        return key  # norm, head
    group, stage, layer, rest = match.groups()
    prefix = f"stage{int(stage) + 1}"
    if group == "patch_embeds":
        return f"{prefix}.patch_embed.{rest}"
    if group == "pos_block":
        return f"{prefix}.pos_block.{rest}"
    if layer == "0":
        return f"{prefix}.first.{rest}"
    return f"{prefix}.blocks.{int(layer) - 1}.{rest}"


def _attention(model: Reference, attn: Reference, where: str) -> tuple[str, int]:
    """('window', ws) for LSA, ('global', sr_ratio) for GSA."""
    cls = type(attn).__name__
    if cls == "LocallyGroupedAttn":
        return "window", int(attn.ws)
    if cls == "GlobalSubSampleAttn":
        return "global", int(attn.sr_ratio)
    raise refuse(model, f"block_cls with attention {cls}", "vitgraph converts LSA and GSA")


def _stage(model: Reference, k: int) -> dict[str, Any]:
    where = f"stage {k}"
    embed = model.patch_embeds[k]
    proj: nn.Conv2d = embed.proj
    if proj.kernel_size != proj.stride or proj.kernel_size[0] != proj.kernel_size[1]:
        raise refuse(model, f"patch_size={proj.kernel_size} in {where}", "only square patches")
    blocks = list(model.blocks[k])
    if len(blocks) < 2:
        raise refuse(
            model,
            f"depths with {len(blocks)} layer(s) in {where}",
            "a twins_stage has its first layer, the PEG and at least one more layer",
        )
    if any(type(b).__name__ != "Block" for b in blocks):
        raise refuse(model, f"block_cls={type(blocks[0]).__name__}")
    pos = model.pos_block[k]
    conv = pos.proj[0]
    if pos.stride != 1 or conv.kernel_size != (3, 3) or conv.groups != conv.in_channels:
        raise refuse(model, f"{where} PosConv with stride {pos.stride}")
    kinds = [_attention(model, b.attn, f"{where} layer {j}") for j, b in enumerate(blocks)]
    windows = {size for kind, size in kinds if kind == "window"}
    ratios = {size for kind, size in kinds if kind == "global"}
    window = windows.pop() if len(windows) == 1 else None
    sr_ratio = ratios.pop() if len(ratios) == 1 else 1
    rows, cols = embed.img_size[0] // proj.stride[0], embed.img_size[1] // proj.stride[1]
    if window and (rows % window or cols % window):
        raise refuse(
            model,
            f"img_size={tuple(model.patch_embeds[0].img_size)}",
            f"{where}'s {rows}x{cols} grid is not a multiple of its window {window}: timm pads it",
        )
    expected = [
        ("window", window) if window and j % 2 == 0 else ("global", sr_ratio)
        for j in range(len(blocks))
    ]
    if windows or ratios or kinds != expected:
        raise refuse(
            model,
            f"{where} attention layout {kinds}",
            "Twins alternates LSA/GSA (SVT) or uses GSA only (PCPVT)",
        )
    first = blocks[0]
    mlp = first.mlp
    if type(mlp).__name__ != "Mlp" or mlp.fc1.bias is None:
        raise refuse(model, f"block_cls with mlp {type(mlp).__name__}")
    eps = layernorm_eps(model, first.norm1, "norm_layer")
    activation = activation_name(model, mlp.act, "block_cls activation")
    if activation != "gelu":
        raise refuse(model, f"block_cls with act_layer={activation}")
    rates = [drop_rate(b.drop_path1) for b in blocks]
    step = rates[1] - rates[0]
    if any(not math.isclose(r, rates[0] + step * j, abs_tol=1e-6) for j, r in enumerate(rates)):
        raise refuse(model, f"{where} non-linear drop_path rates {rates}")
    entry: dict[str, Any] = {
        "id": f"stage{k + 1}",
        "kind": "twins_stage",
        "patch": proj.kernel_size[0],
        "dim": proj.out_channels,
        "heads": first.attn.num_heads,
        "depth": len(blocks),
        "mlp_ratio": width_ratio(mlp.fc1.out_features, mlp.fc1.in_features),
        "sr_ratio": sr_ratio,
        "window": window,
        "norm_eps": eps,
        "embed_norm_eps": layernorm_eps(model, embed.norm, "patch embedding norm"),
        "attn_drop": float(first.attn.attn_drop.p),
        "proj_drop": float(first.attn.proj_drop.p),
    }
    if any(rates):
        entry.update(drop_path=rates[0], drop_path_step=step)
    if drop_rate(model.pos_drops[k]):
        entry["pos_drop"] = drop_rate(model.pos_drops[k])
    return entry


@timm_converter("Twins")
def convert_twins(model: Reference) -> Conversion:
    name = model_name(model)
    if model.global_pool != "avg":
        raise refuse(model, f"global_pool='{model.global_pool}'", "unpooled token outputs")
    if not isinstance(model.head, nn.Linear):
        raise refuse(model, "num_classes=0", "a model without a classifier head")
    graph = [_stage(model, k) for k in range(len(model.blocks))]
    graph.append(
        {"id": "norm", "kind": "layernorm", "eps": layernorm_eps(model, model.norm, "norm_layer")}
    )
    graph.append({"id": "pool", "kind": "mean_pool"})
    if drop_rate(model.head_drop):
        graph.append({"id": "head_drop", "kind": "dropout", "rate": drop_rate(model.head_drop)})
    graph.append({"id": "head", "kind": "linear_head", "classes": model.head.out_features})
    first = model.patch_embeds[0]
    spec = spec_document(name, tuple(first.img_size), first.proj.in_channels, graph)
    return Conversion(spec, rename=rename)
