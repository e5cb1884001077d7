"""HuggingFace transformers' ``DetrForObjectDetection`` as vitgraph's ``specs/detr.yaml``:
the args are read from the model (its ``DetrConfig`` and the timm ResNet it built), the
weights transplanted by a key map (timm's ResNet keeps torchvision's names, as the spec's
backbone does). Every option the spec cannot express is refused by name."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from vitgraph.interop.hf import HFConversion, hf_converter, refuse_hf
from vitgraph.interop.timm import Reference

_RENAMES = [
    (r"^model\.backbone\.model\.(conv1|bn1)\.", r"backbone.\1."),
    (r"^model\.backbone\.model\.(layer\d)\.", r"\1."),
    (r"^model\.input_projection\.", "input_proj.proj."),
    (r"^model\.query_position_embeddings\.weight$", "query_embed.weight"),
    (r"^model\.(encoder|decoder)\.layers\.(\d+)\.", r"\1.\2."),
    (r"^model\.decoder\.layernorm\.", "decoder_norm."),
    (r"\.self_attn_layer_norm\.", ".norm1."),
    (r"\.encoder_attn_layer_norm\.", ".norm2."),
    (r"\.encoder_attn\.", ".cross_attn."),
    (r"\.(q|k|v)_proj\.", r".\1."),
    (r"\.o_proj\.", ".proj."),
    (r"^class_labels_classifier\.", "head.class_embed."),
    (r"^bbox_predictor\.layers\.", "head.bbox_embed.layers."),
]


def detr_state_dict(theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF DETR keys -> vitgraph keys (the encoder's last norm is norm2, the decoder's norm3)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in theirs.items():
        if key.endswith("num_batches_tracked"):
            continue
        new = key
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        if ".final_layer_norm." in new:
            last = "norm2" if new.startswith("encoder.") else "norm3"
            new = new.replace(".final_layer_norm.", f".{last}.")
        out[new] = tensor
    return out


def _backbone_depths(model: Reference) -> tuple[list[int], bool]:
    """The ResNet's blocks per stage, read from the timm module HF built; any ResNet the
    spec's plain torchvision layout cannot express is refused."""
    config = model.config
    kind = getattr(config.backbone_config, "model_type", None)
    if kind != "timm_backbone":
        raise refuse_hf(
            model,
            f"backbone_config of model_type {kind!r}",
            "HF's native ResNet (embedder/encoder.stages keys; dilation ignored): build the "
            "reference with the timm backbone, which keeps torchvision's layout",
        )
    net = model.model.backbone.model
    conv1 = getattr(net, "conv1", None)
    if not isinstance(conv1, nn.Conv2d) or conv1.kernel_size != (7, 7) or conv1.out_channels != 64:
        raise refuse_hf(model, f"backbone={config.backbone_config.backbone!r}", "a deep stem")
    depths, widths = [], (256, 512, 1024, 2048)
    for k, width in enumerate(widths, 1):
        stage = getattr(net, f"layer{k}", None)
        if stage is None:
            raise refuse_hf(model, f"backbone={config.backbone_config.backbone!r}", f"no layer{k}")
        for block in stage:
            conv3 = getattr(block, "conv3", None)
            plain = (
                getattr(block, "se", None) is None
                and isinstance(getattr(block, "aa", nn.Identity()), nn.Identity)
                and getattr(block.conv2, "groups", 1) == 1
                and block.conv2.out_channels * 4 == width
            )
            if not isinstance(conv3, nn.Conv2d) or conv3.out_channels != width or not plain:
                raise refuse_hf(
                    model,
                    f"backbone={config.backbone_config.backbone!r}",
                    "only ResNet-50/101-style bottlenecks (no SE, groups or anti-aliasing)",
                )
        depths.append(len(stage))
    return depths, bool(config.dilation)


def detr_overrides(model: Reference) -> dict[str, object]:
    """The args of specs/detr.yaml that reproduce an HF model (each field honoured or
    refused by name)."""
    config = model.config
    depths, dc5 = _backbone_depths(model)
    if config.position_embedding_type != "sine":
        raise refuse_hf(
            model, f"position_embedding_type={config.position_embedding_type!r}", "only 'sine'"
        )
    if config.auxiliary_loss:
        raise refuse_hf(
            model,
            "auxiliary_loss=True",
            "HF then feeds each decoder layer the previous one's normed output and norms "
            "the last twice, unlike the official code: convert with auxiliary_loss=False "
            "(vitgraph's training outputs carry the official auxiliary predictions)",
        )
    for a, b in (
        ("encoder_ffn_dim", "decoder_ffn_dim"),
        ("encoder_attention_heads", "decoder_attention_heads"),
    ):
        if getattr(config, a) != getattr(config, b):
            raise refuse_hf(
                model,
                f"{a}={getattr(config, a)} with {b}={getattr(config, b)}",
                "one value for both",
            )
    for name in ("encoder_layerdrop", "decoder_layerdrop"):
        if getattr(config, name):
            raise refuse_hf(model, f"{name}={getattr(config, name)}", "no layer drop")
    if config.activation_function not in ("relu", "gelu"):
        raise refuse_hf(
            model, f"activation_function={config.activation_function!r}", "relu or gelu"
        )
    return {
        "channels": config.num_channels,
        "depths": depths,
        "dc5": dc5,
        **transformer_args(config),
    }


def transformer_args(config: object) -> dict[str, object]:
    """The spec args of the encoder-decoder and heads that DETR and Deformable DETR share,
    read off an HF config (its encoder's widths; the checks above require the decoder's
    to equal them)."""
    c: Any = config
    return {
        "dim": c.d_model,
        "heads": c.encoder_attention_heads,
        "enc_layers": c.encoder_layers,
        "dec_layers": c.decoder_layers,
        "ffn": c.encoder_ffn_dim,
        "queries": c.num_queries,
        "classes": c.num_labels,
        "drop": c.dropout,
        "act_drop": c.activation_dropout,
        "attn_drop": c.attention_dropout,
        "act": c.activation_function,
    }


@hf_converter("DetrForObjectDetection")
def convert_detr(model: Reference) -> HFConversion:
    return HFConversion("detr", detr_state_dict, detr_overrides(model))
