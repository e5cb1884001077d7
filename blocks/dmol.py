"""The discretized mixture of logistics (PixelCNN++, Salimans et al. ICLR 2017 §2.1-2.2),
the Image Transformer's second likelihood (Parmar et al. 2018 §3.3): per pixel, a
mixture of ``mixtures`` logistics per channel whose means are linear in the channels
before it, integrated over each of the 256 intensity bins.

The kind returns what the project's generative convention needs: per-sub-pixel
log-probabilities ``(N·C, 256)``, channel c conditioned on the pixel's true channels
before c, so position t has seen sub-pixels before t only and the cross-entropy of these
rows is exactly the mixture's negative log-likelihood.
"""

from __future__ import annotations

from typing import Literal, Self

import torch
import torch.nn.functional as F
from torch import nn

from vitgraph.block import Block
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, expect_ids, expect_tokens
from vitgraph.vocabulary import PosInt


@register
class DmolLogits(Block):
    """Pixel tokens and the ids → per-sub-pixel log-probabilities over the intensities:
    a bias-free linear map to the mixture's 10 numbers per component (t2t
    ``postprocess_image``'s ``output_conv`` for DMOL), then the binned likelihood of every
    intensity. The 10·m numbers are laid out as t2t's
    ``split_to_discretized_mix_logistic_params`` reads them: m mixture logits, then m x 3
    means, m x 3 log-scales, m x 3 coefficients (component-major, channel-minor)."""

    kind: Literal["dmol_logits"] = "dmol_logits"
    role = "head"
    weight_init = "uniform_fan_avg_0.2"  # t2t's model initializer (image_transformer_base)
    arity = 2
    mixtures: PosInt = 10
    """Logistic components per pixel (PixelCNN++ and the paper: 10)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        ids = expect_ids(inputs[1], self.kind)
        if ids.grid is None or tokens.grid is None:
            raise ShapeError("dmol_logits needs the pixels' grid and the ids' grid")
        channels = ids.grid[1] // tokens.grid[1]
        if channels != 3 or tokens.grid[0] != ids.grid[0] or ids.grid[1] % tokens.grid[1]:
            raise ShapeError(
                f"dmol_logits reads RGB pixels: {tokens} and {ids} are not one pixel token "
                "per three sub-pixels (the mixture's coefficients link R, G and B)",
            )
        return self, Tokens(ids.vocab, ids.grid)

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        ids = expect_ids(inputs[1], self.kind)
        return Dmol(tokens.dim, self.mixtures, ids.vocab)


class Dmol(nn.Module):
    bins: torch.Tensor

    def __init__(self, dim: int, mixtures: int, vocab: int) -> None:
        super().__init__()
        self.mixtures, self.vocab = mixtures, vocab
        self.proj = nn.Linear(dim, 10 * mixtures, bias=False)  # t2t: use_bias=False
        # bin centres in [-1, 1] and the half width (PixelCNN++: 1/255 for 256 bins)
        self.register_buffer("bins", torch.linspace(-1.0, 1.0, vocab), persistent=False)
        self.half_bin = 1.0 / (vocab - 1)

    def forward(self, tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]  # a prefix when sampling without the cache: padded, then cut
        ids = F.pad(ids, (0, 3 * tokens.shape[1] - n))
        return self.log_probs(self.proj(tokens), ids)[:, :n]

    def log_probs(self, params: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        m = self.mixtures
        logit, rest = params.float().split([m, 9 * m], dim=-1)
        # t2t's layout (3 kinds, m components, 3 channels) → (B, P, 3 channels, m) each
        means, log_scales, coeffs = rest.unflatten(-1, (3, m, 3)).transpose(-1, -2).unbind(-3)
        log_scales = log_scales.clamp(min=-7.0)  # PixelCNN++'s floor
        coeffs = torch.tanh(coeffs)
        x = ids.unflatten(1, (-1, 3)).float() * (2 * self.half_bin) - 1  # the true values
        r, g = x[..., 0:1], x[..., 1:2]
        # channel means are linear in the channels before them (PixelCNN++ §2.2)
        mean = torch.stack(
            [
                means[..., 0, :],
                means[..., 1, :] + coeffs[..., 0, :] * r,
                means[..., 2, :] + coeffs[..., 1, :] * r + coeffs[..., 2, :] * g,
            ],
            dim=-2,
        )  # (B, P, 3, m)
        centred = self.bins[:, None, None, None, None] - mean  # (V, B, P, 3, m)
        inv = torch.exp(-log_scales)
        upper, lower = inv * (centred + self.half_bin), inv * (centred - self.half_bin)
        # log(σ(upper) - σ(lower)), exact: the bins telescope to a distribution
        middle = (
            upper + torch.log(-torch.expm1(lower - upper)) - F.softplus(upper) - F.softplus(lower)
        )
        first = upper - F.softplus(upper)  # log σ(upper): everything below the first bin
        last = -F.softplus(lower)  # log(1 - σ(lower)): everything above the last bin
        edge = torch.arange(self.vocab, device=params.device)[:, None, None, None, None]
        per_bin = torch.where(edge == 0, first, torch.where(edge == self.vocab - 1, last, middle))
        per_bin = per_bin.permute(1, 2, 3, 4, 0)  # (B, P, 3, m, V)
        # the mixture weights of channel c: the logits and the true channels before c
        true = ids.unflatten(1, (-1, 3))  # (B, P, 3)
        at_true = per_bin.gather(-1, true[..., None, None].expand(-1, -1, -1, m, 1))[..., 0]
        weight = F.log_softmax(logit, dim=-1)[..., None, :]  # (B, P, 1, m)
        # the channels before c, summed (never reading channel c itself)
        before = F.pad(torch.cumsum(at_true[..., :2, :], dim=-2), (0, 0, 1, 0))
        joint = weight + before  # (B, P, 3, m)
        out = torch.logsumexp(joint[..., None] + per_bin, dim=-2)  # (B, P, 3, V)
        out = out - torch.logsumexp(joint, dim=-1)[..., None]
        return out.flatten(1, 2)  # (B, P·3, V)
