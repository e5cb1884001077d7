"""SimpleViT's 2-D sin-cos position table equals vit-pytorch's (the spec's logits against
vit-pytorch's SimpleViT: tests/families.py)."""

from __future__ import annotations

import pytest
import torch

simple_vit = pytest.importorskip("vit_pytorch.simple_vit")


def test_sincos_table_equals_vit_pytorch():
    from vitgraph.blocks.position import sincos_2d

    expected = simple_vit.posemb_sincos_2d(h=7, w=5, dim=64)
    assert torch.allclose(sincos_2d(7, 5, 64, 10000.0), expected, atol=1e-6)
