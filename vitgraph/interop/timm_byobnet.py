"""timm's ByobNet as a vitgraph spec, for the configurations vitgraph has blocks for: the
BoTNets (``botnet26t_256``, ``botnet50ts_256``) and plain ResNet bottleneck networks
(``resnet32ts``): a conv stem (one conv, or timm's tiered / deep / quad stacks, with or
without the max-pool), ResNet bottlenecks and bottleneck-attention blocks, an average pool
and a linear classifier.

Every other ByobNet feature is refused naming the option that builds it (the table of
``vitgraph.interop.options`` lists them): other block types, grouped convs, channel
attention (SE, ECA, GC), halo or lambda attention, anti-aliasing, dilation, other norms,
DropBlock, stochastic depth, average-pool shortcuts, a final conv, other heads.
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
    model_name,
    refuse,
    spec_document,
    timm_converter,
    width_ratio,
)


@timm_converter("ByobNet")
def convert_byobnet(model: Reference) -> Conversion:
    stem, act, stem_stride = _stem(model)
    graph: list[dict[str, Any]] = [stem]
    reduction = stem_stride
    attention_at: int | None = None
    for i, stage in enumerate(model.stages):
        entries = [_block(model, block, act) for block in stage]
        for entry in entries:
            if entry["attention"] and attention_at is None:
                attention_at = reduction
            reduction *= entry["stride"]
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
        raise refuse(model, "num_features (a final 1x1 conv)")
    graph += _head(model)
    size = _input_size(model, attention_at)
    spec = spec_document(model_name(model), size, _in_channels(model), graph)
    return Conversion(spec, rename=_rename)


def _conv(model: Reference, layer: Reference, groups_option: str = "gs") -> dict[str, Any]:
    """A timm ConvNormAct (conv → BatchNorm → act): its kernel, stride, activation
    (None: no act). Anything else is refused naming the option that built it."""
    if type(layer).__name__ != "ConvNormAct":
        raise refuse(model, f"stem_type with a {type(layer).__name__} layer")
    conv, norm = layer.conv, layer.bn
    if type(conv) is not nn.Conv2d:
        raise refuse(model, f"a {type(conv).__name__} conv (same padding or mixed kernels)")
    if conv.dilation != (1, 1):
        raise refuse(model, f"output_stride with dilation {conv.dilation}")
    if conv.groups != 1:
        raise refuse(model, f"{groups_option} (group_size: a conv of {conv.groups} groups)")
    square = conv.kernel_size[0] == conv.kernel_size[1]
    if not square or conv.padding != (conv.kernel_size[0] // 2,) * 2:
        raise refuse(model, f"a {conv.kernel_size} conv padded {conv.padding}")
    if getattr(layer, "aa", None) is not None and not isinstance(layer.aa, nn.Identity):
        raise refuse(model, f"aa_layer={type(layer.aa).__name__}", "anti-aliased strides")
    if type(norm).__name__ != "BatchNormAct2d":
        raise refuse(model, f"norm_layer={type(norm).__name__}", "only BatchNorm")
    if not isinstance(getattr(norm, "drop", nn.Identity()), nn.Identity):
        raise refuse(model, "drop_block_rate (DropBlock)")
    act = None
    if not isinstance(norm.act, nn.Identity):
        act = activation_name(model, norm.act, "act_layer")
    return {"kernel": conv.kernel_size[0], "stride": conv.stride[0], "act": act, "conv": conv}


def _stem(model: Reference) -> tuple[dict[str, Any], str, int]:
    """The bot_stem node, the network's activation and the stem's stride."""
    stem = model.stem
    if type(stem).__name__ == "ConvNormAct":  # stem_type '' / '3x3' / '7x7' without a pool
        convs, pool = [stem], None
    elif type(stem).__name__ == "Stem":
        convs = [m for name, m in stem.named_children() if name.startswith("conv")]
        pool = getattr(stem, "pool", None)
        if len(convs) + (pool is not None) != len(list(stem.children())):
            raise refuse(model, "stem_type with layers other than convs and a pool")
        for layer in convs:
            if type(layer).__name__ != "ConvNormAct":
                raise refuse(model, "stem_type='quad2'", "stem convs without norm and act")
    else:  # 'rep' and 'one' build a RepVggBlock / MobileOneBlock stem
        raise refuse(model, f"stem_type with a {type(stem).__name__} stem")
    if pool is not None and not (
        type(pool) is nn.MaxPool2d and (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    ):
        raise refuse(model, f"stem_pool={type(pool).__name__}({pool.kernel_size})")
    layers = [_conv(model, layer) for layer in convs]
    kernels = {layer["kernel"] for layer in layers}
    acts = {layer["act"] for layer in layers}
    if len(kernels) != 1 or len(acts) != 1 or None in acts:
        raise refuse(model, "stem_type with unlike convs")
    act = acts.pop()
    strides = [layer["stride"] for layer in layers]
    node: dict[str, Any] = {
        "id": "stem",
        "kind": "bot_stem",
        "channels": [layer["conv"].out_channels for layer in layers],
        "kernel": kernels.pop(),
        "act": act,
        "pool": pool is not None,
    }
    if strides != [2] + [1] * (len(strides) - 1):
        node["strides"] = strides
    stride = 2 if pool is not None else 1
    for s in strides:
        stride *= s
    return node, act, stride


def _block(model: Reference, block: Reference, act: str) -> dict[str, Any]:
    kind = type(block).__name__
    if kind not in ("BottleneckBlock", "SelfAttnBlock"):
        raise refuse(model, f"type={kind}", "vitgraph converts the 'bottle' and 'self_attn' blocks")
    if not isinstance(block.drop_path, nn.Identity):
        raise refuse(model, f"drop_path_rate={drop_rate(block.drop_path)}", "in ByobNet blocks")
    if block.shortcut is None:
        raise refuse(model, "downsample=''", "a block without its residual")
    if type(block.shortcut).__name__ == "DownsampleAvg":
        raise refuse(model, "downsample='avg'", "an average-pool shortcut")
    if not isinstance(block.shortcut, nn.Identity):
        shortcut = _conv(model, block.shortcut)
        if shortcut["kernel"] != 1 or shortcut["act"] is not None:
            raise refuse(model, "downsample with a shortcut other than conv1x1 + BatchNorm")
    if isinstance(block.act, nn.Identity):
        raise refuse(model, "block_kwargs linear_out=True", "no activation after the residual")
    if activation_name(model, block.act, "act_layer") != act:
        raise refuse(model, "act_layer differing between the stem and the blocks")
    first, last = _conv(model, block.conv1_1x1), _conv(model, block.conv3_1x1)
    if first["kernel"] != 1 or last["kernel"] != 1 or first["act"] != act or last["act"]:
        raise refuse(model, "block_kwargs changing the 1x1 convs")
    mid, out = block.conv1_1x1.conv.out_channels, block.conv3_1x1.conv.out_channels
    if mid > out:
        raise refuse(
            model,
            f"br or block_kwargs bottle_in=True (a bottleneck of {mid} in a block of {out})",
            "bot_bottleneck's bottleneck is at most as wide as its output",
        )
    entry: dict[str, Any] = {"out": out, "ratio": width_ratio(mid, out), "act": act}
    if kind == "BottleneckBlock":
        if not isinstance(block.conv2b_kxk, nn.Identity):
            raise refuse(model, "block_kwargs extra_conv=True", "a second kxk conv")
        for attr in ("attn", "attn_last"):
            if not isinstance(getattr(block, attr), nn.Identity):
                cls = type(getattr(block, attr)).__name__
                where = " with attn_last=True" if attr == "attn_last" else ""
                raise refuse(model, f"attn_layer={cls}{where}", "channel attention")
        conv = _conv(model, block.conv2_kxk)
        if conv["kernel"] != 3 or conv["act"] != act:
            raise refuse(model, f"block_kwargs kernel_size={conv['kernel']}")
        entry.update(stride=conv["stride"], attention=False)
        return entry
    if not isinstance(block.conv2_kxk, nn.Identity):
        raise refuse(model, "block_kwargs extra_conv=True", "a kxk conv before the attention")
    attn = block.self_attn
    if type(attn).__name__ != "BottleneckAttn":
        raise refuse(model, f"self_attn_layer={type(attn).__name__}")
    if attn.scale_pos_embed:
        raise refuse(model, "self_attn_kwargs scale_pos_embed=True")
    if attn.dim_head_qk != attn.dim_head_v:
        raise refuse(model, "self_attn_kwargs dim_head or qk_ratio", "q and k as wide as v")
    if type(block.post_attn).__name__ != "BatchNormAct2d":
        raise refuse(model, "block_kwargs post_attn_na=False", "no norm after the attention")
    if not isinstance(block.post_attn.drop, nn.Identity):
        raise refuse(model, "drop_block_rate (DropBlock)")
    if activation_name(model, block.post_attn.act, "act_layer") != act:
        raise refuse(model, "act_layer differing after the attention")
    entry.update(
        stride=2 if isinstance(attn.pool, nn.AvgPool2d) else 1,
        attention=True,
        heads=attn.num_heads,
        qkv_bias=attn.qkv.bias is not None,
    )
    return entry


def _head(model: Reference) -> list[dict[str, Any]]:
    head = model.head
    if type(head).__name__ != "ClassifierHead":
        raise refuse(model, f"head_type (head_hidden_size) with a {type(head).__name__} head")
    pool = getattr(head.global_pool, "pool_type", "")
    if pool != "avg":
        raise refuse(model, f"global_pool='{pool}'")
    if not isinstance(head.fc, nn.Linear):
        raise refuse(model, "num_classes=0", "a model without a classifier head")
    graph: list[dict[str, Any]] = [{"id": "pool", "kind": "global_avg_pool"}]
    if drop_rate(head.drop):
        graph.append({"id": "head_drop", "kind": "dropout", "rate": drop_rate(head.drop)})
    graph.append({"id": "head", "kind": "linear_head", "classes": head.fc.out_features})
    return graph


def _in_channels(model: Reference) -> int:
    stem = model.stem
    first = stem if type(stem).__name__ == "ConvNormAct" else stem.conv1
    return int(first.conv.in_channels)


def _input_size(model: Reference, attention_at: int | None) -> tuple[int, int]:
    """The input size the attention tables were built for: the first attention block's
    map size times the stride in front of it (timm builds them from ``img_size``); for a
    convolutional network the pretrained size (any size runs)."""
    if attention_at is not None:
        for stage in model.stages:
            for block in stage:
                if type(block).__name__ == "SelfAttnBlock":
                    table = block.self_attn.pos_embed
                    return table.height * attention_at, table.width * attention_at
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size", (3, 224, 224))
    return size[1], size[2]


def _rename(key: str) -> str:
    key = re.sub(r"^stem\.(conv|bn)\.", r"stem.conv1.\1.", key)  # a single-conv stem
    key = re.sub(r"^stages\.(\d+)\.", r"stage\1.", key)
    return re.sub(r"^head\.fc\.", "head.", key)
