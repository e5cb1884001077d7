"""HuggingFace transformers' ``PvtForImageClassification`` (PVT v1) as vitgraph's
``specs/pvt.yaml``: the spec's args are read from the model's ``PvtConfig`` and its
weights transplanted (HF's separate key and value projections become one ``kv``)."""

from __future__ import annotations

import re

import torch
from torch import nn

from vitgraph.interop.hf import HFConversion, from_hf, hf_converter, refuse_hf
from vitgraph.interop.timm import Reference

_RENAMES = [
    (r"pvt\.encoder\.patch_embeddings\.(\d+)\.projection\.", r"stages.\1.patch_embed.proj."),
    (r"pvt\.encoder\.patch_embeddings\.(\d+)\.layer_norm\.", r"stages.\1.patch_embed.norm."),
    (r"pvt\.encoder\.patch_embeddings\.(\d+)\.position_embeddings", r"stages.\1.pos_embed"),
    (r"pvt\.encoder\.patch_embeddings\.(\d+)\.cls_token", r"stages.\1.cls_token"),
    (r"pvt\.encoder\.block\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2."),
    (r"\.layer_norm_1\.", ".norm1."),
    (r"\.layer_norm_2\.", ".norm2."),
    (r"\.attention\.self\.query\.", ".attn.q."),
    (r"\.attention\.self\.sequence_reduction\.", ".attn.sr."),
    (r"\.attention\.self\.layer_norm\.", ".attn.norm."),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.mlp\.dense1\.", ".mlp.fc1."),
    (r"\.mlp\.dense2\.", ".mlp.fc2."),
    (r"^pvt\.encoder\.layer_norm\.", "norm."),
    (r"^classifier\.", "head."),
]


def pvt_overrides(model: Reference) -> dict[str, object]:
    """The args of specs/pvt.yaml that reproduce an HF model's ``PvtConfig`` (each field
    honoured or refused by name: ``vitgraph.interop.options_hf``)."""
    config = model.config
    if config.num_encoder_blocks != 4:
        raise refuse_hf(model, f"num_encoder_blocks={config.num_encoder_blocks}", "PVT has 4")
    if list(config.strides) != list(config.patch_sizes):
        raise refuse_hf(
            model,
            f"strides={list(config.strides)} unlike patch_sizes={list(config.patch_sizes)}",
            "HF's patch conv then has kernel = stride and stride = patch",
        )
    if config.hidden_act != "gelu":
        raise refuse_hf(model, f"hidden_act={config.hidden_act!r}", "only 'gelu'")
    if config.num_labels == 0:
        raise refuse_hf(model, "num_labels=0", "a model without a classifier head")
    _check_position_tables(model)
    return {
        "image_size": config.image_size,
        "channels": config.num_channels,
        "patches": list(config.patch_sizes),
        "dims": list(config.hidden_sizes),
        "heads": list(config.num_attention_heads),
        "mlp_ratios": list(config.mlp_ratios),
        "sr_ratios": list(config.sequence_reduction_ratios),
        "depths": list(config.depths),
        "classes": config.num_labels,
        "norm_eps": config.layer_norm_eps,
        "dropout": config.hidden_dropout_prob,
        "attn_drop": config.attention_probs_dropout_prob,
        "qkv_bias": config.qkv_bias,
        "drop_path_rate": config.drop_path_rate,
    }


def _check_position_tables(model: Reference) -> None:
    """HF sizes stage i's position table for ``image_size // 2**(i + 1)`` (stage 0: the
    image) and resizes it to the grid it meets: only where every table fits its grid is
    the function a fixed table's (other patch sizes are a dynamic-size model, #20)."""
    config = model.config
    side = config.image_size
    for i, embeddings in enumerate(model.pvt.encoder.patch_embeddings):
        side //= config.patch_sizes[i]
        if embeddings.num_patches != side * side:
            raise refuse_hf(
                model,
                f"patch_sizes={list(config.patch_sizes)} with image_size={config.image_size}",
                f"HF sizes stage {i}'s position table for {embeddings.num_patches} tokens "
                f"and resizes it to its {side}x{side} grid",
            )


def pvt_state_dict(theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF PVT keys -> vitgraph keys; key and value projections concatenated into kv."""
    out: dict[str, torch.Tensor] = {}
    pending: dict[str, torch.Tensor] = {}
    for key, tensor in theirs.items():
        new = key
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        match = re.search(r"\.attention\.self\.(key|value)\.(weight|bias)$", new)
        if match:
            stem = new[: match.start()] + ".attn.kv." + match.group(2)
            pending[f"{stem}|{match.group(1)}"] = tensor
            continue
        out[new] = tensor
    for marked in [k for k in pending if k.endswith("|key")]:
        stem = marked[:-4]
        out[stem] = torch.cat([pending[marked], pending[f"{stem}|value"]], dim=0)
    return out


@hf_converter("PvtForImageClassification")
def convert_pvt(model: Reference) -> HFConversion:
    return HFConversion("pvt", pvt_state_dict, pvt_overrides(model))


def from_transformers_pvt(model: Reference) -> nn.Module:
    """The vitgraph PVT with the weights of an HF ``PvtForImageClassification``
    (``vitgraph.from_hf`` does the same for every supported class)."""
    return from_hf(model)
