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
- ``ceit`` (coeusguo/ceit) and ``lvvit`` (zihangJiang/TokenLabeling, the ``tlt``
  package): the specs name their nodes as the official code, so the keys pass unchanged.

DeepViT (zhoudaquan/dvit_repo) and Refiner (zhoudaquan/Refiner_ViT) have no map yet.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from vitgraph.weights.loader import KeyMap


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

#: spec name -> how its official checkpoint's keys become the spec's
OFFICIAL: dict[str, KeyMap] = {
    "t2t_vit": KeyMap(rename=t2t_key),
    "cct": KeyMap(rename=cct_key),
    "simplevit": KeyMap(rename=simplevit_key),
    "ceit": KeyMap(),
    "lvvit": KeyMap(),
}
