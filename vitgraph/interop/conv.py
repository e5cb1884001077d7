"""Cordonnier et al.'s construction (arXiv:1911.03584 §3, Lemma 1 and Theorem 1): a
multi-head self-attention layer with K² heads and the quadratic relative encoding computes
exactly a K×K convolution. Head h is centred on the kernel offset Δ_h = (i - K//2,
j - K//2) with a large width α, so its softmax is one-hot on the token at that offset; the
value projection's block of head h is the kernel tap ``W[:, :, i, j]``, and the zero tokens
around the grid stand for the convolution's zero padding.

``attention_from_conv`` is the public helper; it names the kernel property it cannot
express (an even or non-square kernel, a stride, a dilation, groups, another padding) in
one SpecError.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from vitgraph.blocks.positional_attention import (
    PositionalAttention,
    PositionalAttentionBlock,
    alpha_to_spread,
)
from vitgraph.errors import Location, SpecError
from vitgraph.shapes import Tokens

#: Eq. 9's α: the nearest off-target softmax weight is e^-α ≈ 2e-22, below fp32's
#: resolution of 1 (and 1e-12 of fp64's)
ALPHA = 50.0


class ConvAsAttention(nn.Module):
    """``(B, C, H, W) -> (B, C_out, H, W)`` through one ``positional_attention`` module on
    the image's pixels as tokens (any H, W: the relative table follows the input)."""

    def __init__(self, attn: PositionalAttention) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = (x.shape[-2], x.shape[-1])
        tokens = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        return self.attn.attend(tokens, grid).transpose(1, 2).unflatten(2, grid)


def _refuse(conv: Any, problem: str, hint: str) -> SpecError:
    return SpecError.at(
        Location("<attention_from_conv>"),
        type(conv).__name__,
        f"attention_from_conv cannot express this convolution: {problem}",
        hint,
    )


def _check(conv: Any) -> int:
    """The kernel side K of a convolution Theorem 1 covers; otherwise the SpecError."""
    if not isinstance(conv, nn.Conv2d):
        raise _refuse(
            conv, f"it takes an nn.Conv2d, got {type(conv).__name__}", "pass an nn.Conv2d"
        )
    kh, kw = conv.kernel_size
    if kh != kw:
        raise _refuse(conv, f"kernel {kh}x{kw} is not square", "use a KxK kernel with odd K")
    if kh % 2 == 0:
        raise _refuse(
            conv,
            f"kernel {kh}x{kw} has an even side (no centre tap for the query)",
            "use an odd kernel side (1, 3, 5, ...)",
        )
    if tuple(conv.stride) != (1, 1):
        raise _refuse(conv, f"stride {tuple(conv.stride)} is not 1", "use stride 1 (Theorem 1)")
    if tuple(conv.dilation) != (1, 1):
        raise _refuse(conv, f"dilation {tuple(conv.dilation)} is not 1", "use dilation 1")
    if conv.groups != 1:
        raise _refuse(conv, f"groups {conv.groups} is not 1", "use groups=1")
    padding = conv.padding
    if padding != "same" and tuple(padding) != (kh // 2, kw // 2):
        raise _refuse(
            conv,
            f"padding {padding} is not K//2 = {kh // 2} (the output must keep the input size)",
            f"use padding={kh // 2} or padding='same'",
        )
    if conv.padding_mode != "zeros":
        raise _refuse(
            conv, f"padding_mode {conv.padding_mode!r} is not 'zeros'", "use zero padding"
        )
    return kh


def attention_from_conv(conv: nn.Conv2d) -> nn.Module:
    """A module built from the ``positional_attention`` kind that computes ``conv``
    (stride 1, odd square kernel K, zero padding K//2, any widths) on ``(B, C, H, W)``:
    K² heads centred on the kernel offsets, α = 50, values = the kernel taps."""
    k = _check(conv)
    c_in, c_out, heads = conv.in_channels, conv.out_channels, k * k
    params = PositionalAttentionBlock(
        heads=heads, out_dim=c_out, pad=k // 2, bias=conv.bias is not None
    )
    weight = conv.weight.detach()
    with torch.device("meta"):  # shapes only; the weights come from the conv below
        built = params.build(Tokens(c_in, (1, 1)))  # attend() follows each input's grid
    assert isinstance(built, PositionalAttention)
    attn = built.to_empty(device=weight.device).to(weight.dtype)
    offsets = torch.arange(k, device=weight.device) - k // 2
    with torch.no_grad():
        # head h = i*K + j looks at (row, col) offset (i - K//2, j - K//2)
        centers = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), -1)
        attn.centers.copy_(centers.reshape(heads, 2))
        attn.spreads.fill_(alpha_to_spread(ALPHA))
        # value input is (head, channel): W_out[o, h*C + c] = W[o, c, i, j]
        attn.value.weight.copy_(weight.permute(0, 2, 3, 1).reshape(c_out, heads * c_in))
        if conv.bias is not None:
            attn.value.bias.copy_(conv.bias.detach())
    return ConvAsAttention(attn)


#: Mahalanobis radius of a 2-D Gaussian's p-quantile ellipse: sqrt(-2 ln(1 - p))
_QUANTILES = {0.5: math.sqrt(-2 * math.log(0.5)), 0.9: math.sqrt(-2 * math.log(0.1))}
NO_MATPLOTLIB = "drawing attention centres needs matplotlib: pip install 'vitgraph[plot]'"


def attention_layers(model: nn.Module) -> list[tuple[str, PositionalAttention]]:
    """The model's positional-attention modules, in order, with their names."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PositionalAttention)]


def centre_ellipses(attn: PositionalAttention) -> list[tuple[float, float, torch.Tensor]]:
    """Per head: its centre (row, col) and the 2x2 covariance Σ of its Gaussian."""
    spreads = attn.spreads.detach().double()
    if attn.isotropic:
        eye = torch.eye(2, dtype=torch.float64)
        inverse = [(s * s) * eye for s in spreads]
    else:
        inverse = [s @ s.T for s in spreads]
    centres = attn.centers.detach().double()
    return [
        (float(c[0]), float(c[1]), torch.linalg.inv(v))
        for c, v in zip(centres, inverse, strict=True)
    ]


def draw_attention_centres(model: nn.Module, path: str, radius: float = 6.0) -> str:
    """Cordonnier et al.'s Figure 3: per layer, each head's centre of attention relative to
    the query pixel (black square), with the 50% (solid) and 90% (dotted) ellipses of its
    Gaussian; writes a PNG at ``path`` and returns it."""
    layers = [(name, m) for name, m in attention_layers(model) if not m.learned]
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no Gaussian positional attention (sa_conv's "
            "quadratic or gaussian encoding): no centres to draw"
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(NO_MATPLOTLIB) from exc
    figure, axes = plt.subplots(1, len(layers), figsize=(2.6 * len(layers), 2.8), dpi=110)
    axes = [axes] if len(layers) == 1 else list(axes)
    angle = torch.linspace(0, 2 * math.pi, 90, dtype=torch.float64)
    circle = torch.stack([torch.cos(angle), torch.sin(angle)])  # (2, 90)
    colours = plt.get_cmap("tab10")
    for axis, (name, attn) in zip(axes, layers, strict=True):
        axis.add_patch(plt.Rectangle((-0.5, -0.5), 1, 1, color="black"))
        for head, (row, col, sigma) in enumerate(centre_ellipses(attn)):
            root = torch.linalg.cholesky(sigma)  # Σ = R Rᵀ maps the unit circle onto it
            colour = colours(head % 10)
            for quantile, style in ((0.5, "-"), (0.9, ":")):
                ring = root @ circle * _QUANTILES[quantile]
                # x: column offset, y: row offset drawn downwards as in the image
                axis.plot(col + ring[1], row + ring[0], style, color=colour, lw=1)
            axis.plot([col], [row], "o", color=colour, ms=3)
        axis.set_xlim(-radius, radius)
        axis.set_ylim(radius, -radius)
        axis.set_aspect("equal")
        axis.set_title(name, fontsize=7)
        axis.tick_params(labelsize=6)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
