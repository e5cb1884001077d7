"""Locally-grouped self-attention (Twins arXiv:2104.13840 §3.2, "LSA"): the patch grid
is cut into non-overlapping window×window groups and each token attends only within its
group. One fused qkv projection and ``F.scaled_dot_product_attention`` over all windows
at once (windows become a batch dimension).
"""

from __future__ import annotations

from typing import Literal, Self

import torch
from torch import nn

from vitgraph.blocks._attention_common import AttentionParams, attend, split_fused
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, expect_grid, expect_tokens
from vitgraph.vocabulary import PosInt


def _windows(rows: int, cols: int) -> list[int]:
    return [w for w in range(2, min(rows, cols) + 1) if rows % w == 0 and cols % w == 0][:8]


@register
class GroupedAttention(AttentionParams):
    """Self-attention within non-overlapping window×window groups of the patch grid."""

    kind: Literal["grouped_attention"] = "grouped_attention"
    weight_init = "conv_fan_out"  # timm Twins._init_weights
    window: PosInt
    """Side of each group, in tokens (Twins-SVT: 7); must divide both grid sides."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        rows, cols = expect_grid(tokens, self.kind)
        if tokens.prefix:
            raise ShapeError(
                f"grouped_attention cannot group the {tokens.prefix} prefix token(s) of {tokens}",
                hint="pool or drop the class token first",
            )
        if rows % self.window or cols % self.window:
            raise ShapeError(
                f"window {self.window} must divide the {rows}x{cols} grid it receives",
                field="window",
                hint="use a window from {fits}"
                if _windows(rows, cols)
                else "use a grid with a common divisor, or the global sr_attention",
                fits=_windows(rows, cols) or None,
            )
        return self.resolve(tokens), tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and tokens.grid and self.dim and self.head_dim
        return LocallyGroupedAttention(
            self.dim,
            self.heads,
            self.head_dim,
            tokens.grid,
            self.window,
            self.qkv_bias,
            self.proj_bias,
            self.attn_drop,
            self.proj_drop,
        )


class LocallyGroupedAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        grid: tuple[int, int],
        window: int,
        qkv_bias: bool,
        proj_bias: bool,
        attn_drop: float,
        proj_drop: float,
    ) -> None:
        super().__init__()
        self.heads, self.head_dim, self.window = heads, head_dim, window
        self.groups = (grid[0] // window, grid[1] // window)  # windows per column, per row
        self.scale = head_dim**-0.5
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(heads * head_dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (gr, gc), w, h, d = self.groups, self.window, self.heads, self.head_dim
        # tokens in window order before the projection (B, gr, gc, w, w, C): the qkv output
        # is then already grouped, and q, k, v below are views of it; grouping after the
        # projection copied 3x the width and kept that copy for the backward pass
        windows = x.unflatten(1, (gr, w, gc, w)).transpose(2, 3)
        qkv = self.qkv(windows).reshape(-1, w * w, 3 * h * d)  # (B*gr*gc, w*w, 3*H*d)
        # 4-D (B*gr*gc, H, w*w, d): windows and heads are batch dims of one SDPA call, and
        # the ONNX exporter translates only 4-D SDPA
        q, k, v = split_fused(qkv, 3, h)
        out = attend(q, k, v, self.attn_drop, self.training, self.scale)
        out = out.unflatten(0, (-1, gr, gc))  # (B, gr, gc, H, w*w, d)
        out = out.unflatten(4, (w, w)).permute(0, 1, 4, 2, 5, 3, 6)  # (B, gr, w, gc, w, H, d)
        return self.proj_drop(self.proj(out.flatten(1, 4).flatten(2)))
