"""timm's Levit and LevitDistilled (``levit_*`` and ``levit_conv_*``) as vitgraph specs.

timm's conv mode (``use_conv=True``) computes the same function on (B, C, H, W) maps with
1×1 Conv+BN in place of Linear+BN; its weights load into the token model once the 1×1
kernels are squeezed to matrices, so both modes convert to the same spec.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from vitgraph.interop.timm import (
    Conversion,
    Reference,
    activation_name,
    drop_rate,
    refuse,
    spec_document,
    timm_converter,
)


@timm_converter("Levit", "LevitDistilled")
def convert_levit(model: Reference) -> Conversion:
    stem = model.stem
    if type(stem).__name__ not in ("Stem16", "Stem8"):
        raise refuse(model, f"stem_backbone={type(stem).__name__}")
    if model.global_pool != "avg":
        raise refuse(model, f"global_pool='{model.global_pool}'", "unpooled token outputs")
    if not hasattr(model.head, "linear"):
        raise refuse(model, "num_classes=0", "a model without a classifier head")
    convs = [m for name, m in stem.named_children() if name.startswith("conv")]
    act = activation_name(model, stem.act1, "act_layer")
    stages = list(model.stages)
    first_block = stages[0].blocks[0]
    attn_act = activation_name(model, first_block.attn.proj.act, "attn_act_layer")
    if attn_act != act:
        raise refuse(model, "attn_act_layer different from act_layer")
    key_dim = first_block.attn.key_dim
    conv_in = convs[0].linear
    graph: list[dict[str, Any]] = [
        {
            "id": "stem",
            "kind": "levit_stem",
            "dim": convs[-1].linear.out_channels,
            "convs": len(convs),
            "act": act,
        }
    ]
    for i, stage in enumerate(stages):
        if not isinstance(stage.downsample, nn.Identity):
            down = stage.downsample
            ad = down.attn_downsample
            if getattr(ad.q.down, "pool", None) is not None or (
                isinstance(ad.q.down, nn.AvgPool2d) and ad.q.down.kernel_size != 1
            ):
                raise refuse(model, "down_op with use_pool", "an average-pool downsampling")
            graph.append(
                {
                    "id": f"down{i}",
                    "kind": "levit_downsample",
                    "dim": ad.proj.ln.bn.num_features,
                    "heads": ad.num_heads,
                    "key_dim": ad.key_dim,
                    "attn_ratio": ad.val_dim / ad.key_dim,
                    "stride": ad.stride,
                    "act": act,
                    "mlp_ratio": _hidden(down.mlp) / ad.proj.ln.bn.num_features,
                    "drop_path": drop_rate(down.drop_path),
                }
            )
        block = stage.blocks[0]
        dim = block.attn.proj.ln.bn.num_features
        graph.append(
            {
                "id": f"stage{i}",
                "kind": "levit_layer",
                "repeat": len(stage.blocks),
                "heads": block.attn.num_heads,
                "key_dim": block.attn.key_dim,
                "attn_ratio": block.attn.val_dim / block.attn.key_dim,
                "mlp_ratio": _hidden(block.mlp) / dim,
                "act": act,
                "drop_path": drop_rate(block.drop_path1),
            }
        )
    graph.append({"id": "pool", "kind": "mean_pool"})
    graph.append(
        {
            "id": "head",
            "kind": "bn_linear_head",
            "classes": model.head.linear.out_features,
            "drop": model.head.drop.p,
        }
    )
    if getattr(model, "head_dist", None) is not None:
        graph.append(
            {
                "id": "head_dist",
                "kind": "bn_distill_head",
                "inputs": ["head", "pool"],
                "drop": model.head_dist.drop.p,
            }
        )
    size = _image_size(model, key_dim)
    name = (
        model.pretrained_cfg.get("architecture", type(model).__name__)
        if hasattr(model, "pretrained_cfg")
        else type(model).__name__
    )
    spec = spec_document(name, size, conv_in.in_channels, graph)

    def after_build(theirs: Reference, ours: Reference) -> None:
        ours.set_distilled_training(bool(getattr(theirs, "distilled_training", False)))

    return Conversion(spec, rename=_rename, convert=_squeeze_1x1, after_build=after_build)


def _hidden(mlp: Reference) -> int:
    return mlp.ln1.bn.num_features


def _image_size(model: Reference, key_dim: int) -> tuple[int, int]:
    """The input size the first stage's bias table was built for (timm sizes it by
    ``img_size // stem stride``)."""
    attn = model.stages[0].blocks[0].attn
    stride = model.stem.stride
    return (attn.resolution[0] * stride, attn.resolution[1] * stride)


def _rename(key: str) -> str:
    key = re.sub(r"^stages\.(\d+)\.blocks\.(\d+)\.", r"stage\1.\2.", key)
    return re.sub(r"^stages\.(\d+)\.downsample\.", r"down\1.", key)


def _squeeze_1x1(key: str, tensor: torch.Tensor) -> torch.Tensor:
    """Conv mode's 1×1 kernels (out, in, 1, 1) are our Linear matrices (out, in)."""
    if tensor.ndim == 4 and not key.startswith("stem.") and tensor.shape[2:] == (1, 1):
        return tensor.flatten(1)
    return tensor
