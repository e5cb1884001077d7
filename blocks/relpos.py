"""Self-attention with a relative position bias over the whole patch grid (timm's
``VisionTransformerRelPos``): every head adds a learned bias, a function of the offset
(Δrow, Δcol) between query and key patch, to its attention logits; the model has no
absolute position table.

The bias comes from one of three sources (timm's ``rel_pos_type``):

- ``mlp`` (timm's default, ``RelPosMlp`` mode 'cr'): a two-layer MLP (2 → hidden, ReLU,
  dropout 0.125, → heads) of the offsets log-spaced as ``sign(Δ) ln(1 + |Δ|)``: the
  continuous position bias of Swin v2 (arXiv:2111.09883 §3.3) without its scaling and
  sigmoid;
- ``mlp_swin`` (``RelPosMlp`` mode 'swin'): Swin v2's own form, offsets scaled to
  [-8, 8] and ``log2``-spaced (§3.3 Eq. 4), a bias-free second layer and
  ``16 · sigmoid`` of the MLP's output;
- ``table`` (``RelPosBias``): one learned entry per offset and head, as Swin v1 (§3.2)
  and BEiT (§2.5, whose three extra entries cover class→patch, patch→class and
  class→class when a class token leads).

With ``mlp`` and ``mlp_swin`` prefix tokens get no bias (zero rows and columns).
"""

from __future__ import annotations

from typing import Literal, Self

import torch
import torch.nn.functional as F
from torch import nn

from vitgraph.blocks._attention_common import AttentionParams, merge_heads, qk_norms, split_fused
from vitgraph.blocks.swin import relative_position_index
from vitgraph.blocks.swin_v2 import log_spaced_coordinates
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens
from vitgraph.vocabulary import DropRate, PosInt


@register
class RelPosAttentionBlock(AttentionParams):
    """Multi-head self-attention plus a relative position bias over the patch grid."""

    kind: Literal["relpos_attention"] = "relpos_attention"
    weight_init = "trunc_normal_linear"  # timm's init_weights_vit_timm, the MLP's too
    computes_qk_norm = True
    rel_pos: Literal["mlp", "mlp_swin", "table"] = "mlp"
    """Where the bias comes from: an MLP of log-spaced offsets (timm's 'mlp'), Swin v2's
    continuous position bias ('mlp_swin'), or a learned table ('table')."""
    rel_pos_hidden: PosInt = 128
    """Hidden width of the bias MLP (timm's ``rel_pos_dim``, default 128)."""
    rel_pos_drop: DropRate = 0.125
    """Dropout after the bias MLP's activation, in training (timm fixes it at 0.125)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        resolved, tokens = super().infer(*inputs)
        assert isinstance(tokens, Tokens)
        if tokens.grid is None:
            raise ShapeError(
                f"relpos_attention biases by the offset between grid positions, but receives "
                f"{tokens} without a grid",
                hint="use it on patch tokens (after patch_embed)",
            )
        if self.rel_pos == "table" and tokens.prefix > 1:
            raise ShapeError(
                f"rel_pos: table has entries for one class token, but the tokens carry "
                f"{tokens.prefix} prefix tokens",
                field="rel_pos",
                hint="use rel_pos: mlp (prefix tokens get no bias), or one prefix token",
            )
        return resolved, tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and tokens.grid is not None
        assert self.dim is not None and self.head_dim is not None
        bias: nn.Module
        if self.rel_pos == "table":
            bias = RelPosTable(tokens.grid, self.heads, tokens.prefix)
        else:
            swin = self.rel_pos == "mlp_swin"
            bias = RelPosMlp(
                tokens.grid, self.heads, self.rel_pos_hidden, tokens.prefix, swin, self.rel_pos_drop
            )
        module = RelPosAttention(
            self.dim,
            self.heads,
            self.head_dim,
            self.qkv_bias,
            self.proj_bias,
            self.attn_drop,
            self.proj_drop,
            bias,
        )
        module.q_norm, module.k_norm = qk_norms(self.qk_norm, self.head_dim, self.qk_norm_eps)
        return module


def log_coordinates(grid: tuple[int, int]) -> torch.Tensor:
    """((2h-1)(2w-1), 2) offsets (Δrow, Δcol) as ``sign(Δ) ln(1 + |Δ|)`` (timm's 'cr'
    log coordinates: natural log, not rescaled)."""
    rows = torch.arange(-(grid[0] - 1), grid[0], dtype=torch.float32)
    cols = torch.arange(-(grid[1] - 1), grid[1], dtype=torch.float32)
    table = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)
    return (torch.sign(table) * torch.log1p(table.abs())).reshape(-1, 2)


class _BiasMlp(nn.Module):
    """2 → hidden → heads with ReLU and dropout, timm's ``Mlp`` key layout (fc1, fc2)."""

    def __init__(self, hidden: int, heads: int, out_bias: bool, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, hidden)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(drop) if drop else nn.Identity()
        self.fc2 = nn.Linear(hidden, heads, bias=out_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class RelPosMlp(nn.Module):
    """The (1, heads, N, N) bias of an MLP of the offsets between grid positions."""

    coords: torch.Tensor  # buffers (register_buffer below)
    index: torch.Tensor

    def __init__(
        self,
        grid: tuple[int, int],
        heads: int,
        hidden: int,
        prefix: int,
        swin: bool,
        drop: float,
    ) -> None:
        super().__init__()
        self.prefix, self.swin, self.area = prefix, swin, grid[0] * grid[1]
        self.mlp = _BiasMlp(hidden, heads, out_bias=not swin, drop=drop)
        coords = log_spaced_coordinates(grid, grid) if swin else log_coordinates(grid)
        # offsets and their index depend on the static grid only: never saved
        self.register_buffer("coords", coords, persistent=False)
        self.register_buffer("index", relative_position_index(*grid).flatten(), persistent=False)

    def forward(self) -> torch.Tensor:
        table = self.mlp(self.coords)  # ((2h-1)(2w-1), heads)
        bias = table[self.index].reshape(self.area, self.area, -1).permute(2, 0, 1)
        if self.swin:
            bias = 16 * torch.sigmoid(bias)  # Swin v2 §3.3: bounded to (0, 16)
        if self.prefix:
            bias = F.pad(bias, [self.prefix, 0, self.prefix, 0])
        return bias.unsqueeze(0)


class RelPosTable(nn.Module):
    """The (1, heads, N, N) bias of a learned table, one entry per offset and head, and
    with a class token BEiT's three entries for its row, its column and itself."""

    index: torch.Tensor  # buffer (register_buffer below)

    def __init__(self, grid: tuple[int, int], heads: int, prefix: int) -> None:
        super().__init__()
        offsets = (2 * grid[0] - 1) * (2 * grid[1] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(offsets + 3 * prefix, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        index = relative_position_index(*grid)
        if prefix:  # BEiT §2.5: class→patch, patch→class, class→class
            index = F.pad(index, [1, 0, 1, 0])
            index[0, :] = offsets
            index[:, 0] = offsets + 1
            index[0, 0] = offsets + 2
        self.length = index.shape[0]
        self.register_buffer("index", index.flatten(), persistent=False)

    def forward(self) -> torch.Tensor:
        bias = self.relative_position_bias_table[self.index]
        return bias.reshape(self.length, self.length, -1).permute(2, 0, 1).unsqueeze(0)


class RelPosAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        qkv_bias: bool,
        proj_bias: bool,
        attn_drop: float,
        proj_drop: float,
        rel_pos: nn.Module,
    ) -> None:
        super().__init__()
        self.heads, self.attn_drop = heads, attn_drop
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=qkv_bias)
        self.q_norm: nn.Module = nn.Identity()  # set by the block (qk_norm)
        self.k_norm: nn.Module = nn.Identity()
        self.rel_pos = rel_pos
        self.proj = nn.Linear(heads * head_dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = split_fused(self.qkv(x), 3, self.heads)  # each (B, H, N, d)
        q, k = self.q_norm(q), self.k_norm(k)
        bias = self.rel_pos().to(q.dtype)  # (1, H, N, N), added to the logits
        x = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=bias,
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )
        return self.proj_drop(self.proj(merge_heads(x, copy=True)))  # (B, N, C)
