"""relpos_attention (timm's VisionTransformerRelPos): the three bias sources against
timm's ``RelPosAttention`` with ``RelPosMlp`` ('cr' and 'swin' modes) and ``RelPosBias``
(BEiT's class-token entries), re-drawn, with and without a class token and qk-norm; the
bias MLP's dropout in training; and the located errors of a bias that cannot be computed
(counts and spec / twin parity of every vit_relpos variant: tests/families.py; every
constructor option: tests/interop/test_options.py)."""

from __future__ import annotations

from functools import partial

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph import SpecError
from vitgraph.blocks.relpos import RelPosAttentionBlock
from vitgraph.errors import ShapeError
from vitgraph.shapes import Tokens

timm = pytest.importorskip("timm")
relpos = pytest.importorskip("timm.models.vision_transformer_relpos")
layers = pytest.importorskip("timm.layers")

CASES = [  # (our rel_pos, timm's bias class and its arguments, prefix tokens)
    ("mlp", partial(layers.RelPosMlp, hidden_dim=24), 0),
    ("mlp", partial(layers.RelPosMlp, hidden_dim=24), 1),
    ("mlp_swin", partial(layers.RelPosMlp, hidden_dim=24, mode="swin"), 1),
    ("table", layers.RelPosBias, 0),
    ("table", layers.RelPosBias, 1),
]


@pytest.mark.parametrize(("rel_pos", "bias", "prefix"), CASES)
@pytest.mark.parametrize("qk_norm", [False, True])
def test_relpos_attention_equals_timms_for_each_bias_source(rel_pos, bias, prefix, qk_norm):
    grid = (3, 4)
    reference = relpos.RelPosAttention(
        32,
        num_heads=2,
        qkv_bias=True,
        qk_norm=qk_norm,
        rel_pos_cls=partial(bias, window_size=grid, prefix_tokens=prefix),
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
    )
    redraw_(reference).eval()
    tokens = Tokens(32, grid, prefix=prefix)
    block = RelPosAttentionBlock(
        heads=2, rel_pos=rel_pos, rel_pos_hidden=24, qk_norm="layernorm" if qk_norm else None
    )
    resolved, _ = block.infer(tokens)
    ours = resolved.build(tokens).eval()
    result = ours.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, prefix + 12, 32, generator=torch.Generator().manual_seed(3))
    assert_same_logits(ours, reference, x)
    if prefix and rel_pos != "table":  # the class token's row and column get no bias
        bias_map = ours.rel_pos()
        assert bias_map.shape == (1, 2, 13, 13)
        assert not bias_map[:, :, 0].any() and not bias_map[:, :, :, 0].any()


def test_the_bias_mlp_drops_an_eighth_of_its_hidden_units_in_training_only():
    tokens = Tokens(16, (4, 4))
    block, _ = RelPosAttentionBlock(heads=2, rel_pos_hidden=64).infer(tokens)
    bias = block.build(tokens).rel_pos
    torch.manual_seed(0)
    assert not torch.equal(bias.train()(), bias.train()())  # timm's Mlp drop=(0.125, 0)
    assert torch.equal(bias.eval()(), bias.eval()())
    assert bias.mlp.drop.p == 0.125


def test_relpos_attention_without_a_grid_is_a_located_error():
    text = """\
vitgraph: 1
name: no_grid
input: {ids: 15, vocab: 8}  # 15 ids: no square grid
graph:
  - {id: wte, kind: token_embed, dim: 32}
  - {id: attn, kind: relpos_attention, heads: 2}
"""
    with pytest.raises(SpecError) as caught:
        vitgraph.load("no_grid.yaml", text=text)
    (problem,) = caught.value.problems
    assert (problem.location.file, problem.location.line) == ("no_grid.yaml", 6)
    assert "without a grid" in problem.message and problem.hint


def test_a_bias_table_for_more_than_one_prefix_token_is_refused_with_the_count():
    tokens = Tokens(32, (3, 3), prefix=2)
    with pytest.raises(ShapeError, match="2 prefix tokens") as caught:
        RelPosAttentionBlock(heads=2, rel_pos="table").infer(tokens)
    assert caught.value.hint and "rel_pos: mlp" in caught.value.hint


def test_srelpos_models_are_refused_naming_shared_rel_pos():
    reference = timm.create_model("vit_srelpos_small_patch16_224", depth=1, img_size=32)
    with pytest.raises(SpecError, match="shared_rel_pos=True"):
        vitgraph.from_timm(reference)
