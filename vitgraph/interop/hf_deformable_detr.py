"""HuggingFace transformers' ``DeformableDetrForObjectDetection`` as vitgraph's
``specs/deformable_detr.yaml``: the args are read from the model (its
``DeformableDetrConfig`` and the native HF ResNet it built), the weights transplanted by
a key map. HF ties the class heads with refinement alone (not with two-stage): a tied
model converts to ``class_heads: shared`` and keeps HF's parameter count. Every option
the spec cannot express is refused by name."""

from __future__ import annotations

import re

import torch

from vitgraph.interop.hf import HFConversion, hf_converter, refuse_hf
from vitgraph.interop.hf_detr import transformer_args
from vitgraph.interop.timm import Reference

_RENAMES = [
    (r"^model\.backbone\.model\.embedder\.embedder\.convolution\.", "backbone.conv1."),
    (r"^model\.backbone\.model\.embedder\.embedder\.normalization\.", "backbone.bn1."),
    (r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.", r"stage\1.\2."),
    (r"\.shortcut\.convolution\.", ".downsample.0."),
    (r"\.shortcut\.normalization\.", ".downsample.1."),
    (r"^model\.input_proj\.(\d+)\.0\.", r"input_proj.levels.\1.conv."),
    (r"^model\.input_proj\.(\d+)\.1\.", r"input_proj.levels.\1.norm."),
    (r"^model\.level_embed$", "memory.level_embed"),
    (r"^model\.query_position_embeddings\.weight$", "queries.query_embed"),
    (
        r"^model\.(reference_points|enc_output|enc_output_norm|pos_trans|pos_trans_norm)\.",
        r"queries.\1.",
    ),
    (r"^model\.(encoder|decoder)\.layers\.(\d+)\.", r"\1.\2."),
    (r"\.self_attn_layer_norm\.", ".norm1."),
    (r"\.encoder_attn_layer_norm\.", ".norm2."),
    (r"\.encoder_attn\.", ".cross_attn."),
    (r"\.(q|k|v)_proj\.", r".\1."),
    (r"\.o_proj\.", ".proj."),
]


def _conv(match: re.Match[str]) -> str:
    """HF's ``layer.j.convolution`` / ``normalization`` -> ``conv{j+1}`` / ``bn{j+1}``."""
    name = "conv" if match.group(2) == "convolution" else "bn"
    return f".{name}{int(match.group(1)) + 1}."


def _stage(match: re.Match[str]) -> str:
    return f"layer{int(match.group(1)) + 1}.{match.group(2)}."


def deformable_detr_state(
    theirs: dict[str, torch.Tensor], layers: int, refine: bool, two_stage: bool, tied: bool
) -> dict[str, torch.Tensor]:
    """HF keys -> ours. Heads: ``class_embed.k`` / ``bbox_embed.k`` for k < layers are the
    decoder layers' (the box heads live in the decoder layers with refinement, in the
    head otherwise; one class head when shared), k = layers the two-stage proposals'.
    HF's ``model.decoder.{class,bbox}_embed`` are the same tensors again."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in theirs.items():
        if key.endswith("num_batches_tracked") or key.startswith("model.decoder.class_embed"):
            continue
        if key.startswith("model.decoder.bbox_embed"):
            continue
        head = re.match(r"^(class|bbox)_embed\.(\d+)\.(.*)$", key)
        if head:
            what, k, rest = head.group(1), int(head.group(2)), head.group(3)
            if k == layers:
                out[f"queries.{what}_embed.{rest}"] = tensor
            elif what == "class" and (tied or not refine):
                if k == 0:
                    out[f"head.class_embed.0.{rest}"] = tensor
            elif what == "class":
                out[f"head.class_embed.{k}.{rest}"] = tensor
            elif refine:
                out[f"decoder.{k}.bbox_embed.{rest}"] = tensor
            elif k == 0:
                out[f"head.bbox_embed.{rest}"] = tensor
            continue
        new = re.sub(
            r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.", _stage, key
        )
        new = re.sub(r"\.layer\.(\d)\.(convolution|normalization)\.", _conv, new)
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        if ".final_layer_norm." in new:
            last = "norm2" if new.startswith("encoder.") else "norm3"
            new = new.replace(".final_layer_norm.", f".{last}.")
        out[new] = tensor
    return out


def _backbone(model: Reference) -> dict[str, object]:
    """The native HF ResNet's stem, widths and depths; anything the spec's torchvision
    layout cannot express is refused."""
    config = model.config
    backbone = config.backbone_config
    kind = getattr(backbone, "model_type", None)
    if kind != "resnet":
        raise refuse_hf(
            model,
            f"backbone {getattr(backbone, 'backbone', None) or kind!r}"
            + (" (use_timm_backbone=True)" if kind == "timm_backbone" else ""),
            "HF's native ResNet only: ResNetConfig(layer_type='bottleneck', out_features="
            "['stage2', 'stage3', 'stage4']) with use_timm_backbone=False",
        )
    if backbone.layer_type != "bottleneck" or backbone.downsample_in_bottleneck:
        raise refuse_hf(
            model,
            f"ResNetConfig(layer_type={backbone.layer_type!r}, downsample_in_bottleneck="
            f"{backbone.downsample_in_bottleneck})",
            "bottlenecks striding in their 3x3 conv",
        )
    if backbone.downsample_in_first_stage or backbone.hidden_act != "relu":
        raise refuse_hf(
            model,
            f"ResNetConfig(downsample_in_first_stage={backbone.downsample_in_first_stage}, "
            f"hidden_act={backbone.hidden_act!r})",
            "a stride-1 first stage and ReLU",
        )
    taps = list(backbone.out_features)
    if config.dilation:
        raise refuse_hf(model, "dilation=True", "HF's native ResNet ignores it")
    if (
        taps != ["stage2", "stage3", "stage4"][-len(taps) :]
        or len(taps) > config.num_feature_levels
    ):
        raise refuse_hf(
            model,
            f"out_features={taps} with num_feature_levels={config.num_feature_levels}",
            "the last stages, at most num_feature_levels of them",
        )
    return {
        "stem": backbone.embedding_size,
        "widths": list(backbone.hidden_sizes),
        "depths": list(backbone.depths),
        "taps": len(taps),
    }


def deformable_detr_overrides(model: Reference) -> dict[str, object]:
    """The args of specs/deformable_detr.yaml that reproduce an HF model (each field
    honoured or refused by name)."""
    config = model.config
    args = _backbone(model)
    if config.position_embedding_type != "sine":
        raise refuse_hf(
            model, f"position_embedding_type={config.position_embedding_type!r}", "only 'sine'"
        )
    for a, b in (
        ("encoder_ffn_dim", "decoder_ffn_dim"),
        ("encoder_attention_heads", "decoder_attention_heads"),
        ("encoder_n_points", "decoder_n_points"),
    ):
        if getattr(config, a) != getattr(config, b):
            raise refuse_hf(
                model,
                f"{a}={getattr(config, a)} with {b}={getattr(config, b)}",
                "one value for both",
            )
    if config.activation_function not in ("relu", "gelu"):
        raise refuse_hf(
            model, f"activation_function={config.activation_function!r}", "relu or gelu"
        )
    if config.two_stage and config.two_stage_num_proposals != config.num_queries:
        raise refuse_hf(
            model,
            f"two_stage_num_proposals={config.two_stage_num_proposals} with "
            f"num_queries={config.num_queries}",
            "the decoder's queries are the proposals kept: set them equal",
        )
    tied = model.class_embed[0].weight is model.class_embed[-1].weight
    boxes_tied = model.bbox_embed[0].layers[0].weight is model.bbox_embed[-1].layers[0].weight
    untied = not config.with_box_refine and not (tied and boxes_tied)
    decoder_heads = getattr(model.model.decoder, "bbox_embed", None)
    if decoder_heads is not None:  # refinement: the decoder must refine with the heads
        first = decoder_heads[0].layers[0].weight  # that predict
        untied = untied or first is not model.bbox_embed[0].layers[0].weight
    if untied:
        raise refuse_hf(
            model,
            f"tie_word_embeddings={config.tie_word_embeddings}",
            "HF then predicts with other heads than its decoder refines with, or with a "
            "head pair per layer without refinement; the spec ties them as officially",
        )
    return {
        **args,
        "channels": config.backbone_config.num_channels,  # HF's ResNet reads its own
        "levels": config.num_feature_levels,
        "points": config.encoder_n_points,
        **transformer_args(config),
        "refine": bool(config.with_box_refine),
        "two_stage": bool(config.two_stage),
        "class_heads": "shared" if tied or not config.with_box_refine else "per_layer",
    }


@hf_converter("DeformableDetrForObjectDetection")
def convert_deformable_detr(model: Reference) -> HFConversion:
    args = deformable_detr_overrides(model)
    config = model.config

    def state(theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tied = args["class_heads"] == "shared"
        refine, two = bool(config.with_box_refine), bool(config.two_stage)
        return deformable_detr_state(theirs, config.decoder_layers, refine, two, tied)

    return HFConversion("deformable_detr", state, args)
