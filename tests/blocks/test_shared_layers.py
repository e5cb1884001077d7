"""The shared vocabulary other issues build on: quick-GELU, RMSNorm and the causal option
of the attention core, each against timm's module or the definition it implements."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from vitgraph.vocabulary import activation

timm_layers = pytest.importorskip("timm.layers")

SEQUENCE = """vitgraph: 1
name: seq
input: {{channels: 3, size: 32}}
graph:
  - {{id: embed, kind: patch_embed, patch: 8, dim: 32}}
  - {{id: norm, kind: {norm}}}
  - {{id: attn, kind: mhsa, heads: 4, causal: {causal}}}
"""


def test_quick_gelu_is_timms():
    x = torch.randn(4, 7) * 3
    assert torch.equal(activation("quick_gelu")(x), timm_layers.QuickGELU()(x))


def test_rmsnorm_kind_equals_timms_rmsnorm_with_the_same_weight():
    graph = vitgraph.load("seq.yaml", text=SEQUENCE.format(norm="rmsnorm", causal="false"))
    ours = graph.build().get_submodule("norm")
    theirs = timm_layers.RmsNorm(32, eps=1e-6)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        theirs.weight.copy_(ours.weight)
    x = torch.randn(2, 16, 32)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)


def test_causal_attention_lets_no_token_see_a_later_one():
    model = (
        vitgraph.load("seq.yaml", text=SEQUENCE.format(norm="layernorm", causal="true"))
        .build()
        .eval()
    )
    attn = model.get_submodule("attn")
    x = torch.randn(2, 16, 32)
    base = attn(x)
    for t in (0, 5, 15):
        changed = x.clone()
        changed[:, t] += torch.randn(2, 32)
        out = attn(changed)
        assert torch.equal(out[:, :t], base[:, :t])  # nothing before t moves
        assert not torch.allclose(out[:, t], base[:, t])  # t itself does


def test_causal_attention_equals_dense_attention_with_the_lower_triangle_mask():
    model = (
        vitgraph.load("seq.yaml", text=SEQUENCE.format(norm="layernorm", causal="true"))
        .build()
        .eval()
    )
    attn = model.get_submodule("attn")
    x = torch.randn(2, 16, 32)
    q, k, v = attn.qkv(x).unflatten(-1, (3, 4, 8)).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-2, -1)) * 8**-0.5
    scores = scores.masked_fill(~torch.ones(16, 16, dtype=torch.bool).tril(), float("-inf"))
    dense = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)
    torch.testing.assert_close(attn(x), attn.proj(dense), rtol=1e-5, atol=1e-5)
