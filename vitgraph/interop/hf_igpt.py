"""HuggingFace transformers' ImageGPT (``ImageGPTForCausalImageModeling``,
``ImageGPTForImageClassification``) as vitgraph's ``specs/igpt.yaml``.

HF's vocabulary holds the palette plus the start id (the last row of ``wte``): ours keeps
the palette in ``wte`` and the start row as the shift's ``start`` vector, and shifts inside
the model. So our model called with ids ``x`` equals HF called with
``[start id, x_0 .. x_{N-2}]``, the input HF's examples build. HF's ``Conv1D`` stores
weights (in, out): they are transposed into ``nn.Linear``'s (out, in).
"""

from __future__ import annotations

import re

import torch

from vitgraph.interop.hf import HFConversion, hf_converter, refuse_hf
from vitgraph.interop.timm import Reference

_RENAMES = [
    (r"^transformer\.wpe\.", "wpe."),
    (r"^transformer\.h\.(\d+)\.ln_1\.", r"h.\1.norm1."),
    (r"^transformer\.h\.(\d+)\.ln_2\.", r"h.\1.norm2."),
    (r"^transformer\.h\.(\d+)\.attn\.c_attn\.", r"h.\1.attn.qkv."),
    (r"^transformer\.h\.(\d+)\.attn\.c_proj\.", r"h.\1.attn.proj."),
    (r"^transformer\.h\.(\d+)\.mlp\.c_fc\.", r"h.\1.mlp.fc1."),
    (r"^transformer\.h\.(\d+)\.mlp\.c_proj\.", r"h.\1.mlp.fc2."),
    (r"^transformer\.ln_f\.", "ln_f."),
    (r"^lm_head\.", "head."),
    (r"^score\.", "score."),
]
_CONV1D = re.compile(r"\.(qkv|proj|fc1|fc2)\.weight$")


def igpt_overrides(model: Reference) -> dict[str, object]:
    """The args of specs/igpt.yaml that reproduce an HF model's ``ImageGPTConfig``;
    every option the spec cannot express is refused by name."""
    config = model.config
    dim = config.n_embd
    refusals = {
        "activation_function": config.activation_function != "quick_gelu",
        "scale_attn_weights=False": not config.scale_attn_weights,
        "scale_attn_by_inverse_layer_idx=True": config.scale_attn_by_inverse_layer_idx,
        "add_cross_attention=True": config.add_cross_attention,
        "tie_word_embeddings=True": config.tie_word_embeddings,
        f"n_inner={config.n_inner}": config.n_inner is not None and config.n_inner % dim != 0,
    }
    # HF drops once after each branch and after the embeddings; the spec's encoder layer
    # also drops after the MLP's activation: only the dropout-free model is the same
    for rate in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        refusals[f"{rate}={getattr(config, rate)}"] = getattr(config, rate) > 0
    for option, refused in refusals.items():
        if refused:
            raise refuse_hf(model, option)
    overrides: dict[str, object] = {
        "depth": config.n_layer,
        "dim": dim,
        "heads": config.n_head,
        "palette": config.vocab_size - 1,  # the last id is the start id
        "positions": config.n_positions,
        "bias": True,  # HF's Conv1D projections always have biases
        "norm_eps": config.layer_norm_epsilon,
    }
    if config.n_inner is not None:
        overrides["mlp_ratio"] = config.n_inner // dim
    if type(model).__name__ == "ImageGPTForImageClassification":
        overrides["classes"] = config.num_labels
    return overrides


def igpt_state_dict(theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF ImageGPT keys -> vitgraph keys: the start row split off ``wte``, Conv1D
    weights transposed."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in theirs.items():
        if key == "transformer.wte.weight":
            out["wte.weight"] = tensor[:-1]
            out["sos.start"] = tensor[-1]
            continue
        new = key
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        if new.startswith("h.") and _CONV1D.search(new):
            tensor = tensor.t()
        out[new] = tensor
    return out


@hf_converter("ImageGPTForCausalImageModeling", "ImageGPTForImageClassification")
def convert_igpt(model: Reference) -> HFConversion:
    return HFConversion("igpt", igpt_state_dict, igpt_overrides(model))
