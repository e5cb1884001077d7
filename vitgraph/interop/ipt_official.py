"""The official IPT code's weights (huawei-noah/Pretrained-IPT, ``model/ipt.py``) in
``specs/ipt.yaml``'s model: ``official_state_dict`` renames a state dict of the official
``ipt`` module to ours, ``load_official`` loads one (a ``.pt`` file read with
``torch.load(weights_only=True)``, or the dict) into a built IPT model.

Renames: ``body.*`` loses its prefix (``linear_encoding``, ``query_embed``), the learned
positions ``body.position_encoding.pe.weight`` (N, D) become ``pos`` (1, N, D), each
``nn.MultiheadAttention``'s ``in_proj_weight`` is our fused ``qkv`` (encoder) or split
into ``q``, ``k``, ``v`` (decoder), ``out_proj`` is ``proj``, ``linear1/2`` are
``mlp.fc1/2``, the MLP head's ``0``/``3`` are ``fc1``/``fc2``, and the per-task ``head.t``
and ``tail.t`` are ``head.branches.t`` and ``tail.branches.t``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

_RULES: list[tuple[str, str]] = [
    (r"^(head|tail)\.(\d+)\.", r"\1.branches.\2."),
    (r"^body\.position_encoding\.pe\.weight$", "pos"),
    (r"^body\.mlp_head\.0\.", "mlp_head.fc1."),
    (r"^body\.mlp_head\.3\.", "mlp_head.fc2."),
    (r"^body\.encoder\.layers\.(\d+)\.self_attn\.in_proj_weight$", r"encoder.\1.attn.qkv.weight"),
    (r"^body\.encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"encoder.\1.attn.proj."),
    (r"^body\.(encoder|decoder)\.layers\.(\d+)\.linear([12])\.", r"\1.\2.mlp.fc\3."),
    (r"^body\.(encoder|decoder)\.layers\.(\d+)\.norm", r"\1.\2.norm"),
    (r"^body\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"decoder.\1.self_attn.proj."),
    (r"^body\.decoder\.layers\.(\d+)\.multihead_attn\.out_proj\.", r"decoder.\1.cross_attn.proj."),
    (r"^body\.", ""),
]
_DECODER_IN_PROJ = re.compile(
    r"^body\.decoder\.layers\.(\d+)\.(self_attn|multihead_attn)\.in_proj_weight$"
)


def official_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official ``ipt`` module's state dict under our names (buffers dropped)."""
    ours: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):  # a buffer of arange(N), not a weight
            continue
        found = _DECODER_IN_PROJ.match(key)
        if found:
            layer, which = found.groups()
            name = "self_attn" if which == "self_attn" else "cross_attn"
            for part, rows in zip("qkv", value.chunk(3), strict=True):
                ours[f"decoder.{layer}.{name}.{part}.weight"] = rows
            continue
        for pattern, replacement in _RULES:
            key, hits = re.subn(pattern, replacement, key)
            if hits and replacement == "pos":
                value = value.unsqueeze(0)
        ours[key] = value
    return ours


def load_official(model: nn.Module, weights: str | Path | dict[str, Any]) -> nn.Module:
    """Load the official IPT weights (a path to its ``.pt`` or the state dict) into a
    model built from specs/ipt.yaml with the same tasks; every tensor must match."""
    state = weights if isinstance(weights, dict) else torch.load(weights, weights_only=True)
    model.load_state_dict(official_state_dict(state), strict=True)
    return model
