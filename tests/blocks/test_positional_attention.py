"""Cordonnier et al. (arXiv:1911.03584): the content-free positional attention computes the
paper's scores (Eq. 9 and the Gaussian of §4.2), ``attention_from_conv`` computes the
convolution it is given (Theorem 1) and names the kernels it cannot express, and the 2x2
input pooling keeps the official code's channel order."""

from __future__ import annotations

import einops
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vitgraph
from vitgraph.blocks.positional_attention import PositionalAttentionBlock, space_to_depth
from vitgraph.interop.conv import attention_from_conv, attention_layers, draw_attention_centres
from vitgraph.shapes import Tokens

# (kernel, in, out, height, width, batch): several K, widths, sizes and batches
CONVS = [
    (1, 3, 5, 4, 6, 2),
    (3, 4, 7, 8, 8, 3),
    (3, 1, 1, 5, 9, 1),
    (5, 2, 3, 9, 7, 2),
    (7, 3, 2, 6, 10, 1),
]


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("bias", [True, False])
def test_attention_from_conv_equals_the_zero_padded_convolution(dtype, tolerance, bias):
    torch.manual_seed(0)
    for k, c_in, c_out, height, width, batch in CONVS:
        conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias).to(dtype)
        x = torch.randn(batch, c_in, height, width, dtype=dtype)
        expected = F.conv2d(x, conv.weight, conv.bias, padding=k // 2)
        got = attention_from_conv(conv)(x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= tolerance, (k, c_in, c_out)


def test_attention_from_conv_accepts_padding_same_and_is_built_from_the_kind():
    conv = nn.Conv2d(2, 3, 3, padding="same")
    module = attention_from_conv(conv)
    x = torch.randn(1, 2, 5, 5)
    assert torch.allclose(module(x), conv(x), atol=1e-5)
    [(_, attn)] = attention_layers(module)
    assert attn.heads == 9 and attn.pad == 1 and attn.isotropic


def test_alpha_fifty_puts_every_off_target_weight_below_1e_21_in_fp32():
    attn = attention_from_conv(nn.Conv2d(1, 1, 5, padding=2)).attn
    from vitgraph.blocks.positional_attention import relative_features

    probs = attn.attention(relative_features((6, 6), 2))  # (25, 36, 100)
    on_target = probs.amax(-1)
    assert torch.all(on_target == 1.0)
    off_target = probs.masked_fill(probs == on_target[..., None], 0)
    assert off_target.max().item() < 1e-21


@pytest.mark.parametrize(
    ("conv", "problem"),
    [
        (nn.Conv2d(2, 2, 4, padding=2), "kernel 4x4 has an even side"),
        (nn.Conv2d(2, 2, (3, 5), padding=(1, 2)), "kernel 3x5 is not square"),
        (nn.Conv2d(2, 2, 3, stride=2, padding=1), "stride (2, 2) is not 1"),
        (nn.Conv2d(2, 2, 3, padding=2, dilation=2), "dilation (2, 2) is not 1"),
        (nn.Conv2d(2, 2, 3, padding=1, groups=2), "groups 2 is not 1"),
        (nn.Conv2d(2, 2, 3, padding=0), "padding (0, 0) is not K//2 = 1"),
        (nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), "padding_mode 'reflect'"),
        (nn.Conv1d(2, 2, 3, padding=1), "it takes an nn.Conv2d, got Conv1d"),
    ],
)
def test_a_kernel_attention_cannot_express_is_one_error_naming_the_problem(conv, problem):
    with pytest.raises(vitgraph.SpecError) as caught:
        attention_from_conv(conv)
    assert len(caught.value.problems) == 1
    message = str(caught.value)
    assert "attention_from_conv cannot express this convolution: " + problem in message
    assert "hint: " in message


def _paper_probabilities(centres, inverse_covariances, grid):
    """softmax over keys of -1/2 (δ - Δ)ᵀ Σ⁻¹ (δ - Δ), δ = key - query, written directly."""
    rows, cols = grid
    pos = torch.tensor([(r, c) for r in range(rows) for c in range(cols)], dtype=torch.float64)
    delta = pos[None, :, :] - pos[:, None, :]  # (Nq, Nk, 2)
    maps = []
    for centre, inverse in zip(centres, inverse_covariances, strict=True):
        d = delta - centre
        maps.append((-0.5 * torch.einsum("qki,ij,qkj->qk", d, inverse, d)).softmax(-1))
    return torch.stack(maps)


@pytest.mark.parametrize("encoding", ["quadratic", "gaussian"])
def test_the_attention_is_the_softmax_of_each_heads_gaussian_of_the_relative_position(encoding):
    torch.manual_seed(0)
    attn = PositionalAttentionBlock(heads=4, encoding=encoding, spread_std=0.3).build(
        Tokens(6, (5, 7))
    )
    attn = attn.double()
    spreads = attn.spreads.detach()
    if encoding == "quadratic":
        inverse = [s * s * torch.eye(2, dtype=torch.float64) for s in spreads]
    else:
        inverse = [s @ s.T for s in spreads]
    expected = _paper_probabilities(attn.centers.detach(), inverse, (5, 7))
    assert torch.allclose(attn.attention(), expected, atol=1e-12)
    # values are the raw input: head h's average of the tokens, then one projection
    x = torch.randn(2, 35, 6, dtype=torch.float64)
    mixed = torch.einsum("hqk,bkc->bqhc", expected, x).flatten(2)
    assert torch.allclose(attn(x), attn.value(mixed), atol=1e-12)


def test_the_learned_encoding_scores_each_offset_by_its_row_and_column_embedding():
    torch.manual_seed(0)
    attn = PositionalAttentionBlock(heads=3, encoding="learned").build(Tokens(5, (4, 6)))
    attn = attn.double()
    assert attn.row_embed.shape == (7, 5) and attn.col_embed.shape == (11, 5)
    positions = [(r, c) for r in range(4) for c in range(6)]
    expected = torch.empty(3, 24, 24, dtype=torch.float64)
    for q, (qr, qc) in enumerate(positions):
        for k, (kr, kc) in enumerate(positions):
            row = attn.row_embed[kr - qr + 3] @ attn.row_keys.weight.T  # (heads,)
            col = attn.col_embed[kc - qc + 5] @ attn.col_keys.weight.T
            expected[:, q, k] = (row + col).detach()
    assert torch.allclose(attn.attention(), expected.softmax(-1), atol=1e-12)


def test_space_to_depth_concatenates_each_2x2_square_in_row_column_channel_order():
    x = torch.randn(2, 3, 6, 8)
    expected = einops.rearrange(x, "b c (h kh) (w kw) -> b (kh kw c) h w", kh=2, kw=2)
    assert torch.equal(space_to_depth(x, block=2), expected)


def test_a_block_that_does_not_divide_the_image_is_reported_at_the_spec(tmp_path):
    with pytest.raises(vitgraph.SpecError) as caught:
        vitgraph.load("sa_conv_quadratic", overrides={"image_size": 30, "block": 4})
    message = str(caught.value)
    assert "sa_conv.yaml" in message
    assert "block 4 must divide the 30x30 image it receives (height 30 leaves 2)" in message


def test_positional_attention_refuses_a_class_token_it_cannot_place(tmp_path):
    spec = tmp_path / "cls.yaml"
    spec.write_text(
        "vitgraph: 1\nname: cls\ninput: {channels: 3, size: 8}\ngraph:\n"
        "  - {id: embed, kind: patch_embed, patch: 2, dim: 8}\n"
        "  - {id: cls, kind: cls_token}\n"
        "  - {id: attn, kind: positional_attention, heads: 2}\n"
    )
    with pytest.raises(vitgraph.SpecError) as caught:
        vitgraph.load(str(spec))
    message = str(caught.value)
    assert f"{spec}:7:" in message
    assert "has 1 prefix token(s) without a position" in message


def test_the_centres_of_a_built_model_are_drawn_one_panel_per_layer(tmp_path):
    model = vitgraph.build("sa_conv_gaussian", overrides={"depth": 2, "dim": 16, "hidden": 8})
    assert [name for name, _ in attention_layers(model)] == ["layers.0.attn", "layers.1.attn"]
    path = draw_attention_centres(model, str(tmp_path / "centres.png"))
    assert (tmp_path / "centres.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.endswith("centres.png")
    with pytest.raises(ValueError, match="has no Gaussian positional attention"):
        draw_attention_centres(nn.Linear(2, 2), str(tmp_path / "none.png"))
