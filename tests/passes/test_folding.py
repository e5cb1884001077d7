"""The arithmetic the passes fold with (vitgraph.passes.folding): each rewrite computes the
same function as the pair it replaces, and a declaration that does not fit its module is
refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.helpers import redraw_
from vitgraph.passes.folding import (
    FoldError,
    batchnorm_affine,
    fuse_linears,
    put,
    scale_inputs,
    scale_outputs,
)


def _bn(channels: int, dims: int = 1) -> nn.Module:
    norm = nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)
    return redraw_(norm).eval()


def test_batchnorm_affine_is_the_eval_batchnorm():
    norm = _bn(6)
    scale, shift = batchnorm_affine(norm)
    x = torch.randn(5, 6)
    torch.testing.assert_close(norm(x), (x * scale + shift).float(), rtol=0, atol=1e-6)


def test_a_batchnorm_after_a_linear_folds_into_its_rows():
    linear, norm = redraw_(nn.Linear(4, 6, bias=False)), _bn(6)
    x = torch.randn(7, 4)
    expected = norm(linear(x))
    scale_outputs(linear, *batchnorm_affine(norm))
    assert linear.bias is not None  # the shift needs one
    torch.testing.assert_close(linear(x), expected, rtol=1e-6, atol=1e-6)


def test_a_batchnorm_after_a_depthwise_conv_folds_into_its_kernels():
    conv, norm = redraw_(nn.Conv2d(4, 4, 3, padding=1, groups=4)), _bn(4, 2)
    x = torch.randn(2, 4, 5, 5)
    expected = norm(conv(x))
    scale_outputs(conv, *batchnorm_affine(norm))
    torch.testing.assert_close(conv(x), expected, rtol=1e-6, atol=1e-6)


def test_a_scale_on_some_rows_changes_only_those_rows():
    linear = redraw_(nn.Linear(3, 6))
    x = torch.randn(2, 3)
    before = linear(x)
    scale_outputs(linear, torch.tensor([2.0, 3.0]), torch.tensor([1.0, -1.0]), rows=(4, 6))
    after = linear(x)
    torch.testing.assert_close(after[:, :4], before[:, :4])
    torch.testing.assert_close(
        after[:, 4:], before[:, 4:] * torch.tensor([2.0, 3.0]) + torch.tensor([1.0, -1.0])
    )


def test_a_zero_dim_scale_scales_every_row():
    linear = redraw_(nn.Linear(3, 5))
    x = torch.randn(2, 3)
    expected = linear(x) / 4
    scale_outputs(linear, torch.tensor(0.25))
    torch.testing.assert_close(linear(x), expected)


def test_a_batchnorm_before_a_linear_folds_into_its_columns():
    norm, linear = _bn(4), redraw_(nn.Linear(4, 3))
    x = torch.randn(6, 4)
    expected = linear(norm(x))
    scale_inputs(linear, *batchnorm_affine(norm))
    torch.testing.assert_close(linear(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: scale_outputs(nn.Linear(3, 5), torch.ones(4)),
            "4-channel scale cannot fold into 5",
        ),
        (
            lambda: scale_outputs(nn.LayerNorm(5), torch.ones(5)),
            "expected a Linear or Conv, found LayerNorm",
        ),
        (
            lambda: scale_outputs(nn.Linear(3, 5), torch.ones(2), rows=(4, 6)),
            "rows 4:6 outside the 5 outputs",
        ),
        (lambda: scale_inputs(nn.Conv2d(3, 3, 3), torch.ones(3), torch.ones(3)), "only Linear"),
        (lambda: batchnorm_affine(nn.LayerNorm(3)), "expected a BatchNorm, found LayerNorm"),
        (lambda: fuse_linears([nn.Linear(3, 2), nn.Linear(4, 2)]), "one input width"),
    ],
)
def test_a_declaration_that_does_not_fit_is_refused_by_name(call, message):
    with pytest.raises(FoldError, match=message):
        call()


def test_fused_linears_compute_the_concatenation_of_their_outputs():
    k, v = redraw_(nn.Linear(4, 3)), redraw_(nn.Linear(4, 5, bias=False))
    x = torch.randn(2, 4)
    fused = fuse_linears([k, v])
    assert (fused.in_features, fused.out_features) == (4, 8)
    torch.testing.assert_close(fused(x), torch.cat([k(x), v(x)], dim=-1))


def test_an_identity_put_into_a_sequential_leaves_it():
    seq = nn.Sequential()
    seq.add_module("conv", nn.Conv2d(1, 1, 1))
    seq.add_module("bn", nn.BatchNorm2d(1))
    root = nn.Module()
    root.add_module("stem", seq)
    put(root, "stem.bn", nn.Identity())
    assert list(seq._modules) == ["conv"]
