"""The modern ViT ingredients (#23), each against timm's module with re-drawn weights:
qk-norm (ViT-22B §2), gated MLPs (Shazeer 2020), MAP pooling (SigLIP), patch dropout
(FLIP), and their located errors. The whole models they build: the VisionTransformer
options in ``tests/interop/test_options.py`` and the shipped specs in tests/families.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vitgraph
from tests.helpers import redraw_
from vitgraph import SpecError
from vitgraph.blocks.attention import MultiHeadSelfAttention
from vitgraph.blocks.map_pool import AttentionPool
from vitgraph.blocks.mlp import GluMlpBlock
from vitgraph.blocks.structural import PatchDropoutBlock
from vitgraph.shapes import Tokens

timm = pytest.importorskip("timm")
layers = pytest.importorskip("timm.layers")

TOKENS = Tokens(32, (4, 4), prefix=1)


def _twin(block, reference: nn.Module) -> nn.Module:
    """Our module of ``block`` over TOKENS, loaded with ``reference``'s re-drawn weights
    (every key must fit)."""
    resolved, _ = block.infer(TOKENS)
    ours = resolved.build(TOKENS)
    ours.load_state_dict(redraw_(reference).state_dict())
    return ours.eval()


def _same(ours: nn.Module, reference: nn.Module) -> float:
    x = torch.randn(2, TOKENS.length, TOKENS.dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return float((ours(x) - reference.eval()(x)).abs().max())


@pytest.mark.parametrize(("kind", "norm"), [("layernorm", nn.LayerNorm), ("rmsnorm", nn.RMSNorm)])
def test_qk_norm_attention_computes_timms_attention_with_qk_norm(kind, norm):
    eps = {"eps": 1e-5}
    reference = layers.Attention(
        32,
        num_heads=4,
        qkv_bias=True,
        qk_norm=True,
        norm_layer=lambda d, **dd: norm(d, **eps, **dd),
    )
    ours = _twin(MultiHeadSelfAttention(heads=4, qk_norm=kind, qk_norm_eps=1e-5), reference)
    assert _same(ours, reference) <= 1e-5


def test_qk_norm_on_a_kind_without_it_is_a_located_error():
    spec = """vitgraph: 1
name: qk
input: {channels: 3, size: 32}
graph:
  - {id: embed, kind: patch_embed, patch: 8, dim: 32}
  - {id: attn, kind: talking_heads, heads: 4, qk_norm: layernorm}
"""
    with pytest.raises(SpecError) as info:
        vitgraph.load("<qk>", text=spec)
    assert str(info.value).splitlines()[0] == (
        "<qk>:6:56: attn.qk_norm: talking_heads computes no qk-norm: qk_norm needs a kind "
        "that does (mhsa) (got 'layernorm')"
    )


def test_split_glu_mlp_computes_timms_swiglu():
    reference = layers.SwiGLU(32, 48)
    ours = _twin(GluMlpBlock(hidden=48), reference)
    assert _same(ours, reference) <= 1e-5


@pytest.mark.parametrize("gate_last", [True, False])
def test_packed_glu_mlp_computes_timms_glu_mlp_gating_either_half(gate_last):
    reference = layers.GluMlp(32, 96, act_layer=nn.GELU, gate_last=gate_last)
    ours = _twin(GluMlpBlock(hidden=48, act="gelu", packed=True, gate_last=gate_last), reference)
    assert _same(ours, reference) <= 1e-5


@pytest.mark.parametrize("include_prefix", [False, True])
def test_map_pool_computes_timms_attention_pool_latent(include_prefix):
    reference = layers.AttentionPoolLatent(32, num_heads=4, mlp_ratio=3.0, norm_layer=nn.LayerNorm)
    ours = _twin(
        AttentionPool(heads=4, mlp_ratio=3.0, norm_eps=1e-5, include_prefix=include_prefix),
        reference,
    )
    x = torch.randn(2, TOKENS.length, TOKENS.dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = reference.eval()(x if include_prefix else x[:, 1:])
        assert float((ours(x) - theirs).abs().max()) <= 1e-5
    assert ours(x).shape == (2, 32)


def test_map_pool_heads_must_divide_the_width_located():
    spec = """vitgraph: 1
name: map
input: {channels: 3, size: 32}
graph:
  - {id: embed, kind: patch_embed, patch: 8, dim: 32}
  - {id: pool, kind: map_pool, heads: 3}
"""
    with pytest.raises(SpecError) as info:
        vitgraph.load("<map>", text=spec)
    assert str(info.value) == (
        "<map>:6:39: pool: map_pool: 3 heads do not divide the width 32\n"
        "  hint: choose a head count that divides the token width"
    )


def test_patch_dropout_keeps_the_tokens_timm_keeps_in_training_and_all_in_eval():
    reference = layers.PatchDropout(0.5, num_prefix_tokens=1)
    resolved, _ = PatchDropoutBlock(rate=0.5).infer(TOKENS)
    ours = resolved.build(TOKENS)
    x = torch.randn(2, TOKENS.length, TOKENS.dim)
    ours.train(), reference.train()
    torch.manual_seed(3)
    kept = ours(x)
    torch.manual_seed(3)
    assert torch.equal(kept, reference(x))
    assert kept.shape == (2, 1 + 8, 32) and torch.equal(kept[:, 0], x[:, 0])
    assert torch.equal(ours.eval()(x), x)
