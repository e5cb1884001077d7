"""Swin Transformer v2's window attention (Liu et al. 2022, arXiv:2111.09883): scaled
cosine attention with a learned, clamped temperature per head (§3.2) and the log-spaced
continuous position bias, a small MLP over the window's relative coordinates (§3.3).
The rest of Swin v2 is the Swin family's (``swin.py``): shifted windows and their mask,
patch merging with ``norm_last``; the res-post-norm is the ``swinv2_layer`` composite.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vitgraph.blocks._attention_common import merge_heads, split_fused
from vitgraph.blocks.swin import (
    _Windowed,
    dynamic_windows,
    effective_window,
    merge,
    partition,
    relative_position_index,
    shifted_window_mask,
    windows_bias,
)
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens
from vitgraph.vocabulary import PosInt

#: the clamp of the learned log-temperature: the logit scale never exceeds 1 / 0.01 (§3.2)
MAX_LOGIT_SCALE = math.log(1.0 / 0.01)
#: hidden width of the continuous-position-bias MLP (the official code's and timm's)
CPB_HIDDEN = 512


@register
class CosineWindowAttention(_Windowed):
    """Swin v2 window attention: ``cos(q, k) * exp(min(logit_scale, log 100))`` plus
    ``16 * sigmoid(cpb_mlp(log-spaced Δ))`` per head (§3.2-3.3); the q and v projections
    carry a bias, k none (timm's ``q_bias``/``v_bias``); ``shift`` as Swin's."""

    kind: Literal["cosine_window_attention"] = "cosine_window_attention"
    precompute = True  # the bias of the CPB MLP over the fixed window, the logit scale, the mask
    no_weight_decay = frozenset({"cpb_mlp", "logit_scale"})  # as timm's SwinTransformerV2
    pretrained_window: PosInt | None = None
    """The window the CPB MLP was trained at: coordinates are normalised by it, so a
    model fine-tuned at a larger window keeps its pre-training's scale (§3.3; null: the
    window itself)."""

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and tokens.grid is not None and self.head_dim
        size, shift = effective_window(tokens.grid, self.window, self.shift)
        pretrained = (self.pretrained_window,) * 2 if self.pretrained_window else size
        cls = DynamicCosineWindowAttention if self.dynamic else CosineShiftedWindowAttention
        return cls(
            tokens.dim,
            tokens.grid,
            self.heads,
            self.head_dim,
            size,
            shift,
            pretrained,
            self.qkv_bias,
            self.attn_drop,
            self.proj_drop,
            stride=self.stride if self.dynamic else None,
        )


def log_spaced_coordinates(size: tuple[int, int], pretrained: tuple[int, int]) -> torch.Tensor:
    """((2h-1)(2w-1), 2) relative offsets (Δrow, Δcol), each scaled to [-8, 8] by the
    pre-training window and log-spaced: ``sign(Δ) log2(1 + |Δ|) / log2(8)`` (§3.3 Eq. 4)."""
    rows = torch.arange(-(size[0] - 1), size[0], dtype=torch.float32)
    cols = torch.arange(-(size[1] - 1), size[1], dtype=torch.float32)
    table = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)  # (2h-1, 2w-1, 2)
    # max(.., 1): a window of one has the single offset 0 (no 0 / 0)
    table = table / torch.tensor([max(p - 1, 1) for p in pretrained], dtype=torch.float32)
    table = table * 8
    table = torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)
    return table.reshape(-1, 2)


class CosineShiftedWindowAttention(nn.Module):
    relative_coords_table: torch.Tensor  # buffers (register_buffer below)
    relative_position_index: torch.Tensor
    attn_mask: torch.Tensor

    def __init__(
        self,
        dim: int,
        grid: tuple[int, int],
        heads: int,
        head_dim: int,
        size: tuple[int, int],
        shift: tuple[int, int],
        pretrained: tuple[int, int],
        qkv_bias: bool,
        attn_drop: float,
        proj_drop: float,
        stride: int | None = None,
    ) -> None:
        super().__init__()
        self.grid, self.size, self.shift, self.stride = grid, size, shift, stride
        self.heads, self.area = heads, size[0] * size[1]
        self.attn_drop = attn_drop
        inner = heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        # q and v biases; k's is zero (a key bias adds the same logit to a whole row)
        self.q_bias = nn.Parameter(torch.zeros(inner)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(inner)) if qkv_bias else None
        self.logit_scale = nn.Parameter(torch.full((heads, 1, 1), math.log(10.0)))
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, CPB_HIDDEN),
            nn.ReLU(inplace=True),
            nn.Linear(CPB_HIDDEN, heads, bias=False),
        )
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()
        # Coordinates, index and mask depend only on the static grid: never saved.
        self.register_buffer(
            "relative_coords_table", log_spaced_coordinates(size, pretrained), persistent=False
        )
        self.register_buffer(
            "relative_position_index", relative_position_index(*size).flatten(), persistent=False
        )
        self.shifted = any(shift)
        static = self.shifted and stride is None  # a dynamic block's mask is per input
        mask = shifted_window_mask(grid, size, shift) if static else torch.zeros(0)
        self.register_buffer("attn_mask", mask, persistent=False)

    def cosine_qkv(self, windows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q (normalised, times the clamped temperature: cosine similarity, §3.2), k
        (normalised), v of the windows (B*nW, heads, N, d), and the continuous position
        bias (heads, N, N): 16·sigmoid of the log-spaced coordinates' MLP (§3.3)."""
        bias = None
        if self.q_bias is not None and self.v_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        q, k, v = split_fused(F.linear(windows, self.qkv.weight, bias), 3, self.heads)
        scale = torch.clamp(self.logit_scale, max=MAX_LOGIT_SCALE).exp()  # (heads, 1, 1)
        q = F.normalize(q, dim=-1) * scale
        k = F.normalize(k, dim=-1)
        table = self.cpb_mlp(self.relative_coords_table)  # ((2h-1)(2w-1), heads)
        position = table[self.relative_position_index].reshape(self.area, self.area, -1)
        return q, k, v, 16 * torch.sigmoid(position.permute(2, 0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = self.grid
        x = x.reshape(-1, rows, cols, x.shape[-1])  # (B, H, W, C)
        if self.shifted:
            x = torch.roll(x, shifts=(-self.shift[0], -self.shift[1]), dims=(1, 2))
        windows = partition(x, self.grid, self.size)  # (B*nW, N, C)
        q, k, v, position = self.cosine_qkv(windows)
        if self.shifted:
            # (nW, heads, N, N) for every image: windows are batch-major. Training views
            # the windows as (B, nW, heads, N, d) so the mask broadcasts, as timm adds it
            # (its per-image copy and that copy's gradient cost ~10% of a Swin v2 step);
            # eval repeats it, as ONNX's attention takes 4-D inputs only
            position = position + self.attn_mask
            if self.training:
                q, k, v = (t.unflatten(0, (x.shape[0], -1)) for t in (q, k, v))
            else:
                position = position.unsqueeze(0).expand(x.shape[0], -1, -1, -1, -1)
                position = position.reshape(-1, self.heads, self.area, self.area)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=position.to(q.dtype),
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=1.0,
        ).flatten(0, -4)  # (B*nW, heads, N, d)
        out = self.proj_drop(self.proj(merge_heads(out, copy=True)))  # (B*nW, N, C)
        out = merge(out, self.grid, self.size)
        if self.shifted:
            out = torch.roll(out, shifts=self.shift, dims=(1, 2))
        return out.reshape(-1, rows * cols, out.shape[-1])


class DynamicCosineWindowAttention(CosineShiftedWindowAttention):
    """``CosineShiftedWindowAttention`` on the grid of each input (``dynamic_windows``)."""

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        assert self.stride is not None
        return dynamic_windows(x, image, self.stride, self.size, self.shift, self.attend)

    def attend(self, windows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v, position = self.cosine_qkv(windows)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=windows_bias(position, mask, windows.shape[0]).to(q.dtype),
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=1.0,
        )
        return self.proj_drop(self.proj(merge_heads(out, copy=True)))  # (B*nW, N, C)
