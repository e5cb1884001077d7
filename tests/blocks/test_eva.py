"""EVA-02 (arXiv:2303.11331): each ingredient against timm's module with re-drawn weights
(RoPE's tables and rotation as ``RotaryEmbeddingCat``, EVA's attention fused and separate
with qk-norm and the inner LayerNorm, SwiGLU's sub-LN), RoPE before the KV cache, and the
located errors of a RoPE that cannot be computed (counts, MACs and spec / twin parity of
the eva02 variants: tests/families.py; every option: tests/interop/test_options.py)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from tests.helpers import redraw_
from vitgraph.blocks._attention_common import Rope, rope_tables
from vitgraph.blocks.attention import MultiHeadSelfAttention
from vitgraph.blocks.eva import EvaAttentionBlock
from vitgraph.blocks.mlp import GluMlpBlock
from vitgraph.blocks.talking_heads import TalkingHeadsAttention
from vitgraph.errors import ShapeError
from vitgraph.shapes import Tokens

timm = pytest.importorskip("timm")
sincos = pytest.importorskip("timm.layers.pos_embed_sincos")
eva = pytest.importorskip("timm.models.eva")


def _timm_rope(grid, head_dim, ref, temperature=10000.0):
    return sincos.RotaryEmbeddingCat(
        head_dim,
        in_pixels=False,
        feat_shape=list(grid),
        ref_feat_shape=ref,
        temperature=temperature,
    )


@pytest.mark.parametrize(
    ("grid", "head_dim", "ref", "temperature"),
    [((4, 4), 16, None, 10000.0), ((6, 3), 8, (16, 16), 10000.0), ((2, 5), 12, None, 100.0)],
)
def test_rope_tables_equal_timms_rotary_embedding_cat(grid, head_dim, ref, temperature):
    sin, cos = rope_tables(grid, head_dim, ref, temperature)
    expected = _timm_rope(grid, head_dim, ref, temperature).get_embed()
    torch.testing.assert_close(torch.cat([sin, cos], -1), expected)


def test_rope_rotates_the_patch_tokens_as_timm_and_leaves_the_prefix():
    x = torch.randn(2, 3, 1 + 12, 8)  # (B, heads, prefix + 3x4, d)
    embed = _timm_rope((3, 4), 8, (6, 6)).get_embed()
    rotated = sincos.apply_rot_embed_cat(x[:, :, 1:], embed)
    out = Rope((3, 4), 1, 8, (6, 6), 10000.0)(x)
    torch.testing.assert_close(out, torch.cat([x[:, :, :1], rotated], dim=2))


def _ours(block, tokens: Tokens) -> torch.nn.Module:
    resolved, _ = block.infer(tokens)
    return resolved.build(tokens).eval()


@pytest.mark.parametrize("fused", [True, False])
def test_eva_attention_equals_timms_with_rope_qk_norm_and_inner_norm(fused):
    tokens = Tokens(32, (3, 4), prefix=1)
    reference = eva.EvaAttention(
        32,
        num_heads=2,
        qkv_fused=fused,
        num_prefix_tokens=1,
        norm_layer=torch.nn.LayerNorm,
        qk_norm=True,
        scale_norm=True,
    )
    redraw_(reference).eval()
    block = EvaAttentionBlock(
        heads=2, fused=fused, rope=True, rope_ref_grid=6, qk_norm="layernorm",
        qk_norm_eps=1e-5, inner_norm=True, inner_norm_eps=1e-5,
    )  # fmt: skip
    ours = _ours(block, tokens)
    result = ours.load_state_dict(reference.state_dict(), strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 13, 32, generator=torch.Generator().manual_seed(3))
    rope = _timm_rope((3, 4), 16, (6, 6)).get_embed()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x, rope=rope), atol=1e-5, rtol=1e-5)


def test_glu_mlp_sub_ln_equals_timms_swiglu_with_its_norm():
    reference = redraw_(timm.layers.SwiGLU(24, 40, norm_layer=torch.nn.LayerNorm)).eval()
    ours = _ours(GluMlpBlock(hidden=40, norm=True, norm_eps=1e-5), Tokens(24, (2, 2)))
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 4, 24)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_rope_comes_before_the_kv_cache_so_decoding_equals_the_whole_sequence():
    tokens = Tokens(16, (2, 4), prefix=1)
    block = MultiHeadSelfAttention(heads=2, causal=True, rope=True)
    attention = _ours(block, tokens)
    torch.nn.init.normal_(attention.qkv.weight)
    x = torch.randn(1, 9, 16)
    with torch.no_grad():
        whole = attention(x)
        attention.decoding(True)
        chunks = [attention(x[:, a:b]) for a, b in [(0, 3), (3, 4), (4, 9)]]
        attention.decoding(False)
    torch.testing.assert_close(torch.cat(chunks, dim=1), whole)


def test_rope_needs_a_head_width_four_divides_and_a_grid():
    with pytest.raises(ShapeError, match="head width that 4 divides.*got 6"):
        EvaAttentionBlock(heads=2, rope=True).infer(Tokens(12, (4, 4)))
    with pytest.raises(ShapeError, match="without a grid"):
        MultiHeadSelfAttention(heads=2, rope=True).infer(Tokens(16, None, count=9))


def test_rope_on_a_kind_that_does_not_compute_it_is_refused_by_name():
    with pytest.raises(ValidationError, match="talking_heads computes no rotary embedding"):
        TalkingHeadsAttention(heads=2, rope=True)
