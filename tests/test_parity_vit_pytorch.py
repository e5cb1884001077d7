"""The SimpleViT spec, configured like vit-pytorch's SimpleViT, computes its logits."""

from __future__ import annotations

import re

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_

simple_vit = pytest.importorskip("vit_pytorch.simple_vit")

LIKE_VIT_PYTORCH = {
    "patch_norm": True,
    "rep_size": False,
    "qkv_bias": False,
    "proj_bias": False,
    "norm_eps": 1e-5,
    "act": "gelu",
    "image_size": 64,
    "dim": 64,
    "depth": 2,
    "heads": 4,
    "classes": 10,
}
RENAMES = [
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


def rename(key: str) -> str:
    for pattern, replacement in RENAMES:
        key, hits = re.subn(pattern, replacement, key)
        if hits:
            return key
    return key


def test_simplevit_spec_gives_vit_pytorch_logits():
    reference = redraw_(
        simple_vit.SimpleViT(
            image_size=64,
            patch_size=16,
            num_classes=10,
            dim=64,
            depth=2,
            heads=4,
            mlp_dim=256,
            dim_head=16,
        )
    )
    ours = vitgraph.build("simplevit_s_16", overrides=LIKE_VIT_PYTORCH)
    state = {rename(k): v for k, v in reference.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    assert_same_logits(ours, reference, torch.randn(2, 3, 64, 64))


def test_sincos_table_equals_vit_pytorch():
    from vitgraph.blocks.position import sincos_2d

    expected = simple_vit.posemb_sincos_2d(h=7, w=5, dim=64)
    assert torch.allclose(sincos_2d(7, 5, 64, 10000.0), expected, atol=1e-6)
