"""HuggingFace transformers' ``CvtForImageClassification`` (CvT, arXiv:2103.15808) as a
vitgraph spec of ``cvt_stage`` nodes, its fields read from the model's ``CvtConfig`` and
checked against its modules; each field is honoured or refused by name
(``vitgraph.interop.options_hf``).

HF's CvT runs at any input size (it has no position table); the twin is built for
``config.image_size`` when the config carries one, else 224 (CvT's ImageNet size): a
twin for every size is the dynamic image size of #20.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from vitgraph.interop.hf import HFConversion, hf_converter, refuse_hf
from vitgraph.interop.timm import Reference

_KEYS = [
    (r"^cvt\.encoder\.stages\.(\d+)\.", r"stage\1."),
    (r"embedding\.convolution_embeddings\.projection", "patch_embed.proj"),
    (r"embedding\.convolution_embeddings\.normalization", "patch_embed.norm"),
    (r"layers\.(\d+)\.", r"blocks.\1."),
    (
        r"attention\.attention\.convolution_projection_(q|k|v)\w*\.convolution_projection\."
        r"convolution",
        r"attn.conv_proj_\1.conv",
    ),
    (
        r"attention\.attention\.convolution_projection_(q|k|v)\w*\.convolution_projection\."
        r"normalization",
        r"attn.conv_proj_\1.bn",
    ),
    (r"attention\.attention\.projection_(q|k|v)\w*", r"attn.proj_\1"),
    (r"attention\.output\.dense", "attn.proj"),
    (r"intermediate\.dense", "mlp.fc1"),
    (r"output\.dense", "mlp.fc2"),
    (r"layernorm_before", "norm1"),
    (r"layernorm_after", "norm2"),
    (r"^layernorm", "norm"),
    (r"^classifier", "head"),
]


def cvt_key(key: str) -> str:
    """An HF CvT key as vitgraph's (``cvt.encoder.stages.2.layers.0.attention...`` →
    ``stage2.blocks.0.attn...``)."""
    for pattern, replacement in _KEYS:
        key = re.sub(pattern, replacement, key)
    return key


def cvt_state_dict(theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {cvt_key(k): t for k, t in theirs.items()}


def cvt_spec(model: Reference) -> dict[str, Any]:
    """The spec document of an HF CvT model (refusing what vitgraph cannot express)."""
    config = model.config
    stages = len(config.depth)
    _refuse_unsupported(model, stages)
    graph: list[dict[str, Any]] = []
    for i in range(stages):
        graph.append(
            {
                "id": f"stage{i}",
                "kind": "cvt_stage",
                "dim": config.embed_dim[i],
                "heads": config.num_heads[i],
                "depth": config.depth[i],
                "patch": config.patch_sizes[i],
                "stride": config.patch_stride[i],
                "padding": config.patch_padding[i],
                "cls": bool(config.cls_token[i]),
                "mlp_ratio": float(config.mlp_ratio[i]),
                "qkv_bias": bool(config.qkv_bias[i]),
                "attn_drop": float(config.attention_drop_rate[i]),
                "kernel_qkv": config.kernel_qkv[i],
                "stride_kv": config.stride_kv[i],
            }
        )
    graph += [
        {"id": "norm", "kind": "layernorm", "eps": 1e-5},  # HF's LayerNorm defaults
        {"id": "pool", "kind": "take_cls"},
        {"id": "head", "kind": "linear_head", "classes": config.num_labels},
    ]
    size = int(getattr(config, "image_size", 224))
    return {
        "vitgraph": 1,
        "name": "cvt",
        "paper": "converted from transformers CvtForImageClassification",
        "input": {"channels": config.num_channels, "size": [size, size]},
        "graph": graph,
    }


def _refuse_unsupported(model: Reference, stages: int) -> None:
    config = model.config
    for i in range(stages):
        method = config.qkv_projection_method[i]
        if method != "dw_bn":
            raise refuse_hf(
                model,
                f"qkv_projection_method={list(config.qkv_projection_method)}",
                "only 'dw_bn': HF builds no projection conv for the others and fails",
            )
        # conv_attention pads its depthwise convs by kernel // 2 (the official code's
        # padding for its odd kernels)
        for field in ("padding_q", "padding_kv"):
            if getattr(config, field)[i] != config.kernel_qkv[i] // 2:
                raise refuse_hf(
                    model,
                    f"{field}={list(getattr(config, field))}",
                    f"conv_attention pads its convs by kernel_qkv // 2, "
                    f"here {[k // 2 for k in config.kernel_qkv]}",
                )
        if config.stride_q[i] != 1:
            raise refuse_hf(
                model,
                f"stride_q={list(config.stride_q)}",
                "a strided query shortens the sequence its residual adds to: HF's forward fails",
            )
        if bool(config.cls_token[i]) != (i == stages - 1):
            raise refuse_hf(
                model,
                f"cls_token={list(config.cls_token)}",
                "the class token in the last stage only (HF's forward fails without it)",
            )
        if config.drop_rate[i]:
            raise refuse_hf(
                model,
                f"drop_rate={list(config.drop_rate)}",
                "HF drops after the embedding, the attention and the MLP's second layer, "
                "vitgraph's layer after the MLP's activation too",
            )
    rates = [float(m.drop_prob) for m in model.modules() if type(m).__name__ == "CvtDropPath"]
    if any(rates):
        raise refuse_hf(
            model,
            f"drop_path_rate={list(config.drop_path_rate)}",
            "HF's CvtLayer drops the residual stream with the MLP branch, "
            "x = drop_path(x + mlp(x)), at one rate per stage; set every CvtDropPath's "
            "drop_prob to 0 for an exact twin (eval mode never drops)",
        )
    if config.num_labels == 0:
        raise refuse_hf(model, "num_labels=0", "a model without a classifier head")


@hf_converter("CvtForImageClassification")
def convert_cvt(model: Reference) -> HFConversion:
    return HFConversion(cvt_spec(model), cvt_state_dict)
