"""timm's SwinTransformer (Swin v1 and Swin-S3) and SwinTransformerV2 as vitgraph specs.

Node ids follow timm's module names (``layers.2.blocks.5.attn.qkv``), so every key maps
to itself except the classifier, ``head.fc`` in timm and ``head`` here. Swin v2's stages
are v1's with the ``swinv2_layer`` block and patch merging that normalises last.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from vitgraph.blocks.swin import effective_window
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


@timm_converter("SwinTransformer", "SwinTransformerV2")
def convert_swin(model: Reference) -> Conversion:
    embed = model.patch_embed
    if getattr(embed, "dynamic_img_pad", False):
        raise refuse(model, "a patch embedding with dynamic_img_pad=True")
    if type(embed).__name__ != "PatchEmbed":
        raise refuse(model, f"embed_layer={type(embed).__name__}")
    proj: nn.Conv2d = embed.proj
    if proj.kernel_size != proj.stride or proj.padding != (0, 0):
        raise refuse(model, "embed_layer with an overlapping patch embedding")
    if proj.kernel_size[0] != proj.kernel_size[1]:
        raise refuse(model, f"patch_size={proj.kernel_size}", "only square patches")
    if getattr(model, "absolute_pos_embed", None) is not None:
        raise refuse(model, "ape (absolute position embedding)")
    graph: list[dict[str, Any]] = [
        {
            "id": "patch_embed",
            "kind": "patch_embed",
            "patch": proj.kernel_size[0],
            "dim": proj.out_channels,
            "bias": proj.bias is not None,
        }
    ]
    embed_eps = layernorm_eps(model, embed.norm, "norm_layer")
    if embed_eps is not None:
        graph[0].update(norm=True, norm_eps=embed_eps)
    graph.append(_stages(model))
    graph.append(
        {"id": "norm", "kind": "layernorm", "eps": layernorm_eps(model, model.norm, "norm_layer")}
    )
    head = model.head
    if getattr(head, "global_pool", None) is None or head.global_pool.pool_type != "avg":
        raise refuse(model, f"global_pool='{getattr(model, 'global_pool', '?')}'")
    graph.append({"id": "pool", "kind": "mean_pool"})
    if drop_rate(head.drop):
        graph.append({"id": "head_drop", "kind": "dropout", "rate": drop_rate(head.drop)})
    if not isinstance(head.fc, nn.Linear):
        raise refuse(model, "num_classes=0", "a model without a classifier head")
    graph.append({"id": "head", "kind": "linear_head", "classes": head.fc.out_features})
    spec = spec_document(
        _name(model),
        tuple(embed.img_size),
        proj.in_channels,
        graph,
        features=[f"layers.{i}" for i in range(len(model.layers))],
    )
    return Conversion(spec, rename=_rename)


def _rename(key: str) -> str:
    return "head." + key[len("head.fc.") :] if key.startswith("head.fc.") else key


def _name(model: Reference) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__)


def _stages(model: Reference) -> dict[str, Any]:
    """One ``layers`` repeat with every stage's settings under ``at``."""
    if getattr(model.layers[0].blocks[0], "always_partition", False):
        raise refuse(model, "always_partition=True", "windows larger than the grid, padded")
    v2 = type(model).__name__ == "SwinTransformerV2"
    # strict_img_size=False (dynamic_img_size=True): every stage reads the grid of each
    # input off the image (its stride over it), windows padded and masks built per input
    dynamic = bool(getattr(model, "dynamic_img_size", False))
    stride = model.patch_embed.patch_size[0]
    per_stage: dict[int, dict[str, Any]] = {}
    for index, stage in enumerate(model.layers):
        downsample = not isinstance(stage.downsample, nn.Identity)
        stride *= 2 if downsample else 1
        if downsample:
            merge = stage.downsample
            if merge.reduction.out_features != 2 * merge.dim:
                raise refuse(
                    model,
                    f"embed_dim with {merge.dim} -> {merge.reduction.out_features} in "
                    f"layers.{index}",
                    "patch merging to other than twice the width",
                )
        blocks = list(stage.blocks)
        first = blocks[0]
        attn, mlp = first.attn, first.mlp
        window = first.window_size
        if window[0] != window[1]:
            raise refuse(model, f"window_size={window}", "only square windows")
        grid = tuple(first.input_resolution)
        sizes, _ = effective_window(grid, window[0], 0)
        if not dynamic and (grid[0] % sizes[0] or grid[1] % sizes[1]):
            raise refuse(
                model,
                f"img_size={tuple(model.patch_embed.img_size)}",
                f"layers.{index}'s {grid[0]}x{grid[1]} grid is not a multiple of its window "
                f"{window[0]}: timm pads it",
            )
        for k, block in enumerate(blocks):
            _, expected = effective_window(
                tuple(block.input_resolution), window[0], window[0] // 2 if k % 2 else 0
            )
            if tuple(block.shift_size) != expected:
                raise refuse(model, f"window_size with shift {block.shift_size} in layers.{index}")
        rates = [drop_rate(b.drop_path1) for b in blocks]
        step = (rates[-1] - rates[0]) / (len(rates) - 1) if len(rates) > 1 else 0.0
        if any(abs(r - (rates[0] + k * step)) > 1e-6 for k, r in enumerate(rates)):
            raise refuse(model, f"a non-linear drop-path schedule in layers.{index}")
        per_stage[index] = {
            "depth": len(blocks),
            "heads": attn.num_heads,
            "head_dim": attn.qkv.out_features // (3 * attn.num_heads),
            "window": window[0],
            "downsample": downsample,
            "mlp_ratio": width_ratio(mlp.fc1.out_features, mlp.fc1.in_features),
            "qkv_bias": (attn.q_bias if v2 else attn.qkv.bias) is not None,
            "attn_drop": float(attn.attn_drop.p),
            "proj_drop": float(attn.proj_drop.p),
            "drop_path_start": rates[0],
            "drop_path_step": step,
            "norm_eps": layernorm_eps(model, first.norm1, "norm_layer"),
        }
        if dynamic:
            per_stage[index].update(dynamic=True, stride=stride)
        if v2:
            per_stage[index].update(_v2_stage(model, first.attn, index))
        if activation_name(model, mlp.act, "act_layer") != "gelu":
            raise refuse(model, f"act_layer={type(mlp.act).__name__}")
    stages: dict[str, Any] = {
        "id": "layers",
        "kind": "swin_stage",
        "repeat": len(per_stage),
        "depth": 1,
        "heads": 1,
        "at": per_stage,
    }
    if dynamic:
        stages["inputs"] = ["$prev", "input"]
    return stages


def _v2_stage(model: Reference, attn: Reference, index: int) -> dict[str, Any]:
    """A Swin v2 stage's settings beyond v1's: its block kind, patch merging that
    normalises last, and the window its position-bias MLP was pre-trained at (timm's
    ``pretrained_window_sizes``; 0: the window itself)."""
    pretrained = tuple(attn.pretrained_window_size)
    if pretrained[0] != pretrained[1]:
        raise refuse(
            model, f"pretrained_window_sizes with {pretrained} in layers.{index}", "only square"
        )
    settings: dict[str, Any] = {"layer": "swinv2_layer", "merge_norm_last": True}
    if pretrained[0] > 0:
        settings["pretrained_window"] = pretrained[0]
    return settings
