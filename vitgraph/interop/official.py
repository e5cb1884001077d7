"""Key maps of the reference checkpoints that are neither timm's nor transformers': each
family's official repository (or the package that carries it) as its ``state_dict``
names the parameters, onto the spec's node ids (``vitgraph convert``). Each map is the
one the family's parity test loads the reference's re-drawn weights through
(``tests/references.py``), so it is checked against the reference wherever that runs.

- ``t2t_vit``: yitu-opensource/T2T-ViT (``attentionN.kqv`` / ``.w`` / ``.proj`` and the
  tokens-to-token MLPs as ``mlp.0`` / ``mlp.2``);
- ``cct``: vit-pytorch's CCT (its ``classifier.`` prefix, ``linear1`` / ``linear2``);
- ``simplevit``: vit-pytorch's SimpleViT (``to_patch_embedding``,
  ``transformer.layers.i.{0,1}``, ``linear_head``);
- ``ceit`` (coeusguo/ceit), ``lvvit`` (zihangJiang/TokenLabeling, the ``tlt`` package)
  and ``deepvit`` (zhoudaquan/dvit_repo ``models/deep_vision_transformer.py``: its
  ``PatchEmbed_CNN`` stem, ``attn.reatten_matrix`` / ``attn.var_norm``): the specs name
  their nodes as the official code, so the keys pass unchanged;
- ``refiner`` (zhoudaquan/Refiner_ViT ``models/refined_transformer.py``): a plain layer's
  fused ``attn.qkv`` holds our map's ``qk`` rows then the layer's ``v`` rows, a shared
  layer's ``attn.qkv`` is its ``v`` alone; ``attn.DLA`` and ``attn.adapt_bn`` are our
  ``attn.refiner``, the MLP's ``scale_channel`` our ``ls.gamma``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vitgraph.weights.loader import KeyMap, Offer, offers_from_state

State = dict[str, torch.Tensor]


def _whole(state: State) -> State:
    return state


@dataclass(frozen=True)
class Layout:
    """An official checkpoint layout: tensors that hold several of ours are split first
    (``unfuse``, on the whole state_dict), then every key is renamed (``keymap``)."""

    keymap: KeyMap = field(default_factory=KeyMap)
    unfuse: Callable[[State], State] = _whole

    def offers(self, state: State) -> dict[str, Offer]:
        return offers_from_state(self.unfuse(state), self.keymap)


def _renames(pairs: list[tuple[str, str]]) -> Callable[[str], str]:
    """The first pattern that matches rewrites the key."""
    compiled = [(re.compile(p), r) for p, r in pairs]

    def rename(key: str) -> str:
        for pattern, replacement in compiled:
            key, hits = pattern.subn(replacement, key)
            if hits:
                return key
        return key

    return rename


def t2t_key(key: str) -> str:
    key = re.sub(r"(attention\d)\.(kqv|w)\b", r"\1.attn.\2", key)
    key = re.sub(r"(attention\d)\.proj\.", r"\1.attn.proj.", key)
    key = re.sub(r"(attention\d)\.mlp\.0\.", r"\1.mlp.fc1.", key)
    return re.sub(r"(attention\d)\.mlp\.2\.", r"\1.mlp.fc2.", key)


def cct_key(key: str) -> str:
    key = key.removeprefix("classifier.")
    key = re.sub(r"\.linear1\.", ".mlp.fc1.", key)
    return re.sub(r"\.linear2\.", ".mlp.fc2.", key)


simplevit_key = _renames(
    [
        (r"to_patch_embedding\.1\.", "patch_embed.patch_norm."),
        (r"to_patch_embedding\.2\.", "patch_embed.proj."),
        (r"to_patch_embedding\.3\.", "patch_embed.norm."),
        (r"transformer\.layers\.(\d+)\.0\.norm\.", r"blocks.\1.norm1."),
        (r"transformer\.layers\.(\d+)\.0\.to_qkv\.", r"blocks.\1.attn.qkv."),
        (r"transformer\.layers\.(\d+)\.0\.to_out\.", r"blocks.\1.attn.proj."),
        (r"transformer\.layers\.(\d+)\.1\.net\.0\.", r"blocks.\1.norm2."),
        (r"transformer\.layers\.(\d+)\.1\.net\.1\.", r"blocks.\1.mlp.fc1."),
        (r"transformer\.layers\.(\d+)\.1\.net\.3\.", r"blocks.\1.mlp.fc2."),
        (r"transformer\.norm\.", "norm."),
        (r"linear_head\.", "head."),
    ]
)

refiner_key = _renames(
    [
        (r"\.attn\.DLA\.", ".attn.refiner."),
        (r"\.attn\.adapt_bn\.", ".attn.refiner.adapt_bn."),
        (r"\.mlp\.scale_channel$", ".ls.gamma"),
    ]
)

_REFINER_QKV = re.compile(r"(blocks\.\d+)\.attn\.qkv\.(weight|bias)")


def refiner_unfuse(state: State) -> State:
    """Each layer's ``attn.qkv`` as ours: ``map.qk`` and ``attn.v`` of a plain layer (its
    rows are q, k, v in turn, each head after head), ``attn.v`` of a shared one (it
    computes values only). The layer's width is its ``attn.proj``'s."""
    out: State = {}
    for key, tensor in state.items():
        found = _REFINER_QKV.fullmatch(key)
        proj = found and state.get(f"{found[1]}.attn.proj.weight")
        if not found or proj is None or tensor.shape[0] != 3 * proj.shape[0]:
            out[key.replace(".attn.qkv.", ".attn.v.") if found else key] = tensor
            continue
        layer, what, dim = found[1], found[2], proj.shape[0]
        out[f"{layer}.map.qk.{what}"] = tensor[: 2 * dim]
        out[f"{layer}.attn.v.{what}"] = tensor[2 * dim :]
    return out


#: spec name -> how its official checkpoint's tensors become the spec's
OFFICIAL: dict[str, Layout] = {
    "t2t_vit": Layout(KeyMap(rename=t2t_key)),
    "cct": Layout(KeyMap(rename=cct_key)),
    "simplevit": Layout(KeyMap(rename=simplevit_key)),
    "ceit": Layout(),
    "lvvit": Layout(),
    "deepvit": Layout(),
    "refiner": Layout(KeyMap(rename=refiner_key), refiner_unfuse),
}
