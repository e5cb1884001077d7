"""CvT (arXiv:2103.15808): the class token joins the last stage only and no position
table exists (counts and parity against HuggingFace: tests/families.py)."""

from __future__ import annotations

import pytest
import torch

import vitgraph

transformers = pytest.importorskip("transformers")


def test_cvt_class_token_joins_only_the_last_stage_and_bypasses_the_conv_projection():
    summary = vitgraph.load("cvt_13").summary()
    rows = {r.id: r for r in summary.rows}
    assert rows["stage1.blocks.1.residual2"].output_shape == (28 * 28, 192)
    assert rows["stage2.blocks.0.residual2"].output_shape == (1 + 14 * 14, 384)
    model = vitgraph.build("cvt_13", overrides={"image_size": 64, "depths": [1, 1, 1]})
    attn = model.get_submodule("stage2.blocks.0.attn")
    x = torch.randn(2, 1 + 4 * 4, 384)  # 64 px: a 4x4 grid in the last stage
    # a depthwise conv never sees the class token: changing it leaves the conv outputs alone
    fmap = x[:, 1:].transpose(1, 2).unflatten(2, (4, 4))
    assert attn.conv_proj_q.conv.in_channels == 384 == attn.conv_proj_q.conv.groups
    assert attn.conv_proj_k(fmap).shape == (2, 2 * 2, 384)  # stride 2 -> 2x2 keys
    assert attn(x).shape == x.shape


def test_cvt_has_no_position_table():
    keys = vitgraph.build("cvt_13", device="meta").state_dict()
    assert not any("pos" in k for k in keys)
    assert [k for k in keys if "cls_token" in k] == ["stage2.cls_token"]
