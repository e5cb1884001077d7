"""timm's ByobNet as a vitgraph spec, for the BoTNet configurations (``botnet26t_256``,
``botnet50ts_256``): a plain or tiered conv stem, ResNet bottlenecks and bottleneck
attention blocks. Any other ByobNet feature (grouped convs, SE/ECA, halo or lambda
attention, other block types) is refused."""

from __future__ import annotations

import re
from typing import Any

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


@timm_converter("ByobNet")
def convert_byobnet(model: Reference) -> Conversion:
    stem = model.stem
    convs = [m for name, m in stem.named_children() if name.startswith("conv")]
    extra = [n for n, _ in stem.named_children() if not n.startswith("conv") and n != "pool"]
    if not convs or extra:
        raise refuse(model, f"stem layers {extra or 'none'}", "only conv stems are supported")
    if not isinstance(getattr(stem, "pool", nn.Identity()), nn.MaxPool2d | nn.Identity):
        raise refuse(model, f"stem_pool={type(stem.pool).__name__}")
    act = activation_name(model, convs[0].bn.act, "act_layer")
    kernel = convs[0].conv.kernel_size[0]
    graph: list[dict[str, Any]] = [
        {
            "id": "stem",
            "kind": "bot_stem",
            "channels": [c.conv.out_channels for c in convs],
            "kernel": kernel,
            "act": act,
            "pool": isinstance(getattr(stem, "pool", None), nn.MaxPool2d),
        }
    ]
    for i, stage in enumerate(model.stages):
        entries = [_block(model, block, act) for block in stage]
        common = {k: v for k, v in entries[-1].items() if all(e.get(k) == v for e in entries)}
        at = {
            j: {k: v for k, v in e.items() if common.get(k, object()) != v}
            for j, e in enumerate(entries)
        }
        node = {"id": f"stage{i}", "kind": "bot_bottleneck", "repeat": len(entries), **common}
        at = {j: change for j, change in at.items() if change}
        if at:
            node["at"] = at
        graph.append(node)
    if not isinstance(model.final_conv, nn.Identity):
        raise refuse(model, "num_features (a final conv)")
    head = model.head
    if getattr(head.global_pool, "pool_type", "avg") != "avg" or not isinstance(head.fc, nn.Linear):
        raise refuse(model, "a head other than average pool + Linear")
    graph.append({"id": "pool", "kind": "global_avg_pool"})
    if drop_rate(head.drop):
        graph.append({"id": "head_drop", "kind": "dropout", "rate": drop_rate(head.drop)})
    graph.append({"id": "head", "kind": "linear_head", "classes": head.fc.out_features})
    size = _input_size(model)
    name = model.pretrained_cfg.get("architecture", "ByobNet")
    spec = spec_document(name, (size[0], size[1]), convs[0].conv.in_channels, graph)
    return Conversion(spec, rename=_rename)


def _block(model: Reference, block: Reference, act: str) -> dict[str, Any]:
    kind = type(block).__name__
    if kind not in ("BottleneckBlock", "SelfAttnBlock"):
        raise refuse(model, f"block type {kind}")
    if drop_rate(block.drop_path):
        raise refuse(model, "drop_path_rate (stochastic depth in BotNet blocks)")
    mid = block.conv1_1x1.conv.out_channels
    out = block.conv3_1x1.conv.out_channels
    entry: dict[str, Any] = {"out": out, "ratio": mid / out}
    if kind == "BottleneckBlock":
        for attr in ("conv2b_kxk", "attn", "attn_last"):
            if not isinstance(getattr(block, attr), nn.Identity):
                raise refuse(model, f"bottleneck {attr}")
        conv = block.conv2_kxk.conv
        if conv.groups != 1 or conv.kernel_size != (3, 3):
            raise refuse(model, "grouped or non-3x3 bottleneck convs")
        entry.update(stride=conv.stride[0], attention=False)
    else:
        attn = block.self_attn
        if type(attn).__name__ != "BottleneckAttn" or not isinstance(block.conv2_kxk, nn.Identity):
            raise refuse(model, f"self_attn_layer={type(attn).__name__}")
        if attn.scale_pos_embed or attn.dim_head_qk != attn.dim_head_v:
            raise refuse(model, "scale_pos_embed or qk_ratio != 1")
        entry.update(
            stride=2 if isinstance(attn.pool, nn.AvgPool2d) else 1,
            attention=True,
            heads=attn.num_heads,
            qkv_bias=attn.qkv.bias is not None,
        )
    if activation_name(model, block.act, "block act") != act:
        raise refuse(model, "mixed activations")
    entry["act"] = act
    return entry


def _input_size(model: Reference) -> tuple[int, int]:
    """The input size the attention tables were built for: the first attention block's
    map size times the stride in front of it (timm builds them from ``img_size``)."""
    reduction = 2 * (2 if isinstance(getattr(model.stem, "pool", None), nn.MaxPool2d) else 1)
    for stage in model.stages:
        for block in stage:
            if type(block).__name__ == "SelfAttnBlock":
                table = block.self_attn.pos_embed
                return table.height * reduction, table.width * reduction
            reduction *= block.conv2_kxk.conv.stride[0]
    size = model.pretrained_cfg.get("input_size", (3, 224, 224))
    return size[1], size[2]


def _rename(key: str) -> str:
    key = re.sub(r"^stages\.(\d+)\.", r"stage\1.", key)
    return re.sub(r"^head\.fc\.", "head.", key)
