"""Content-free positional attention (Cordonnier, Loukas, Jaggi, "On the Relationship
between Self-Attention and Convolutional Layers", ICLR 2020, arXiv:1911.03584), with the
2×2 space-to-depth input of its CIFAR-10 models.

Each head attends by relative position only (§3, Eq. 8-9): the score of key k for query
q is ``-1/2 (δ - Δ)ᵀ Σ⁻¹ (δ - Δ)`` with ``δ = pos(k) - pos(q)`` (rows, cols), a learned
centre Δ per head and ``Σ⁻¹ = s² I`` (the quadratic encoding, ``α = s²/2`` of Eq. 9) or
``Σ⁻¹ = L Lᵀ`` (the generalised Gaussian, §4.2, Fig. 4). A third, learned form scores each
row and column offset by a learned embedding and a learned key per head (§4.1, Table 1
"SA learned emb."; the official ``Learned2DRelativeSelfAttention`` without content). The
values are the raw input: each head averages the input tokens at full width and one
``value`` projection maps the concatenated heads back (Lemma 1's ``W_out``; the official
``GaussianSelfAttention``). With K² heads centred on the K×K offsets and α large, a head's
softmax is one-hot on its offset and the layer computes a K×K convolution (Theorem 1):
``attention_from_conv``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.block import Block, FunctionOp
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import Image, TensorType, Tokens, expect_grid, expect_image
from vitgraph.vocabulary import DropRate, PosInt


@register
class PositionalAttentionBlock(Block):
    """Self-attention whose scores depend only on the relative position of query and key
    (a Gaussian per head); the heads average the raw input and one projection maps them."""

    kind: Literal["positional_attention"] = "positional_attention"
    role = "attention"
    weight_init = "keep"  # build draws the official init (centres, spreads, N(0, 0.02))
    heads: PosInt
    """Number of heads (K² reproduce a K×K convolution, Theorem 1)."""
    encoding: Literal["quadratic", "gaussian", "learned"] = "quadratic"
    """quadratic: one inverse width s per head, Σ⁻¹ = s²·I (Eq. 9, α = s²/2); gaussian: a
    2×2 matrix L per head, Σ⁻¹ = L Lᵀ (the generalised quadratic encoding, §4.2); learned:
    a learned embedding per row offset and per column offset, scored by a learned key per
    head, ``w_rᵀ r_δr + w_cᵀ c_δc`` (§4.1 "learned embedding", content-free)."""
    out_dim: PosInt | None = None
    """Output width; default: the input width."""
    pad: Annotated[int, Field(ge=0)] = 0
    """Zero tokens around the grid that every query may attend to (K//2 reproduces a
    zero-padded convolution at the borders); 0: the official models."""
    bias: bool = True
    """Bias of the value projection."""
    attn_drop: DropRate = 0.0
    """Dropout on the attention probabilities."""
    center_std: Annotated[float, Field(ge=0)] = 2.0
    """Init: centres Δ ~ N(0, center_std²) (the official ``gaussian_init_mu_std``)."""
    spread_std: Annotated[float, Field(ge=0)] = 0.01
    """Init: spreads = 1 (or I) + N(0, spread_std²) (``gaussian_init_sigma_std``)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = inputs[0]
        if not isinstance(x, Tokens):
            raise ShapeError(f"positional_attention takes tokens on a grid, but receives {x}")
        expect_grid(x, self.kind)
        if x.prefix:
            raise ShapeError(
                f"positional_attention places every token on the grid, but {x} has "
                f"{x.prefix} prefix token(s) without a position",
                hint="attend before adding the class token, or pool the grid instead",
            )
        out = self.out_dim or x.dim
        return self.model_copy(update={"out_dim": out}), Tokens(out, x.grid)

    def build(self, *inputs: TensorType) -> nn.Module:
        x = inputs[0]
        assert isinstance(x, Tokens) and x.grid is not None
        return PositionalAttention(
            x.dim,
            self.out_dim or x.dim,
            self.heads,
            self.encoding,
            x.grid,
            self.pad,
            self.bias,
            self.attn_drop,
            self.center_std,
            self.spread_std,
        )


def relative_features(grid: tuple[int, int], pad: int) -> torch.Tensor:
    """``(Nq, Nk, 5)``: (δr, δc, δr², δc², δr·δc) of every key (on the grid grown by
    ``pad`` on each side) relative to every query, raster order."""
    rows, cols = grid
    q = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"), -1)
    k = torch.stack(
        torch.meshgrid(
            torch.arange(-pad, rows + pad), torch.arange(-pad, cols + pad), indexing="ij"
        ),
        -1,
    )
    delta = (k.reshape(1, -1, 2) - q.reshape(-1, 1, 2)).double()  # (Nq, Nk, 2)
    r, c = delta.unbind(-1)
    return torch.stack([r, c, r * r, c * c, r * c], -1).float()


class PositionalAttention(nn.Module):
    features: torch.Tensor  # (Nq, Nk, 5) of the built grid: relative_features

    def __init__(
        self,
        dim: int,
        out_dim: int,
        heads: int,
        encoding: str,
        grid: tuple[int, int],
        pad: int,
        bias: bool,
        attn_drop: float,
        center_std: float,
        spread_std: float,
    ) -> None:
        super().__init__()
        self.heads, self.grid, self.pad = heads, grid, pad
        self.isotropic, self.learned = encoding == "quadratic", encoding == "learned"
        if self.learned:  # one embedding per row / column offset, -(n-1) .. n-1
            rows, cols = grid[0] + pad, grid[1] + pad
            self.row_embed = nn.Parameter(torch.randn(2 * rows - 1, dim) * 0.02)
            self.col_embed = nn.Parameter(torch.randn(2 * cols - 1, dim) * 0.02)
            self.row_keys = nn.Linear(dim, heads, bias=False)  # w_r per head
            self.col_keys = nn.Linear(dim, heads, bias=False)
            for keys in (self.row_keys, self.col_keys):
                nn.init.normal_(keys.weight, std=0.02)
        else:
            self.centers = nn.Parameter(torch.randn(heads, 2) * center_std)  # Δ, (row, col)
        if self.isotropic:  # s: Σ^{-1/2} = s·I
            self.spreads = nn.Parameter(1 + torch.randn(heads) * spread_std)
        elif not self.learned:  # L: Σ^{-1} = L Lᵀ
            self.spreads = nn.Parameter(torch.eye(2).repeat(heads, 1, 1))
            with torch.no_grad():
                self.spreads.add_(torch.randn(heads, 2, 2) * spread_std)
        self.register_buffer("features", relative_features(grid, pad), persistent=False)
        self.attn_drop = nn.Dropout(attn_drop) if attn_drop else nn.Identity()
        self.value = nn.Linear(heads * dim, out_dim, bias=bias)
        nn.init.normal_(self.value.weight, std=0.02)  # BERT's init (official code)
        if bias:
            nn.init.zeros_(self.value.bias)

    def target_vectors(self) -> torch.Tensor:
        """``(5, heads)``: the per-head weights of the 5 relative features whose dot product
        is the score ``-1/2 (δ - Δ)ᵀ Σ⁻¹ (δ - Δ)`` up to a per-query constant (Eq. 9)."""
        if self.isotropic:
            a = c = self.spreads**2
            b = torch.zeros_like(a)
        else:
            inv = self.spreads @ self.spreads.transpose(1, 2)  # Σ⁻¹ = L Lᵀ, (heads, 2, 2)
            a, b, c = inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]
        mr, mc = self.centers.unbind(-1)
        return -0.5 * torch.stack([-2 * (a * mr + b * mc), -2 * (c * mc + b * mr), a, c, 2 * b])

    def attention(self, features: torch.Tensor | None = None) -> torch.Tensor:
        """``(heads, Nq, Nk)``: each head's attention probabilities (no input needed), on
        the built grid or on the one ``features`` (``relative_features``) describe."""
        table = self.features if features is None else features
        if self.learned:  # offsets index the tables: δ + (n - 1)
            rows = table[..., 0].long() + (self.row_embed.shape[0] - 1) // 2
            cols = table[..., 1].long() + (self.col_embed.shape[0] - 1) // 2
            row_scores = self.row_keys(self.row_embed)  # (2 rows - 1, heads)
            col_scores = self.col_keys(self.col_embed)
            scores = row_scores[rows] + col_scores[cols]  # (Nq, Nk, heads)
        else:
            scores = table @ self.target_vectors()  # (Nq, Nk, heads)
        return scores.permute(2, 0, 1).softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._attend(x, self.grid, self.attention())

    def attend(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """The forward on tokens of any ``grid`` (the built one's table is not reused)."""
        table = relative_features(grid, self.pad).to(x.device, self.value.weight.dtype)
        return self._attend(x, grid, self.attention(table))

    def _attend(self, x: torch.Tensor, grid: tuple[int, int], probs: torch.Tensor):
        if self.pad:  # zero tokens around the grid: the padded convolution's zeros
            image = x.transpose(1, 2).unflatten(2, grid)  # (B, C, rows, cols)
            x = F.pad(image, (self.pad,) * 4).flatten(2).transpose(1, 2)  # (B, Nk, C)
        probs = self.attn_drop(probs)  # (heads, Nq, Nk)
        mixed = torch.einsum("hqk,bkc->bqhc", probs, x).flatten(2)  # (B, Nq, heads * C)
        return self.value(mixed)  # (B, Nq, out)


def space_to_depth(x: torch.Tensor, *, block: int) -> torch.Tensor:
    # (B, C, H, W) -> (B, (kh kw C), H/k, W/k): the official downsample_concatenate's order
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // block, block, w // block, block)
    return x.permute(0, 3, 5, 1, 2, 4).reshape(b, block * block * c, h // block, w // block)


@register
class SpaceToDepth(Block):
    """Each ``block×block`` square of pixels becomes one pixel with their channels
    concatenated (row, column, channel order): Cordonnier et al.'s 2×2 input pooling (§4,
    "reduce the image size by concatenating 2×2 neighbouring pixels")."""

    kind: Literal["space_to_depth"] = "space_to_depth"
    role = "structural"
    block: PosInt = 2
    """Side of the square of pixels that becomes one pixel."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        for side, name in ((image.height, "height"), (image.width, "width")):
            if side % self.block:
                raise ShapeError(
                    f"block {self.block} must divide the {image.height}x{image.width} image "
                    f"it receives ({name} {side} leaves {side % self.block})",
                    field="block",
                    hint=f"use a block that divides {side}, or resize the input",
                )
        k = self.block
        return self, Image(image.channels * k * k, image.height // k, image.width // k)

    def build(self, *inputs: TensorType) -> FunctionOp:
        return FunctionOp(space_to_depth, {"block": self.block})


def alpha_to_spread(alpha: float) -> float:
    """The inverse width s whose isotropic score ``-s²/2 ‖δ-Δ‖²`` is Eq. 9's ``-α‖δ-Δ‖²``."""
    return math.sqrt(2 * alpha)
