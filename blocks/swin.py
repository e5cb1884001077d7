"""Swin Transformer blocks (Liu et al. 2021, arXiv:2103.14030): window attention with a
relative position bias (§3.2), shifted windows with an attention mask (§3.2, Fig. 4),
and patch merging between stages (§3.1).

Tokens stay ``(B, H*W, C)`` between blocks (the grid lives in the static type); each
block reshapes to ``(B, H, W, C)`` internally with sizes known at build time. A
``dynamic`` block (timm's Swin with ``strict_img_size=False``) also takes the image and
reads the grid of each input off it: the map is padded to a window multiple and the
shifted windows' mask is computed per input, by leaf functions of a symbolic trace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.blocks._attention_common import merge_heads, split_fused
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.resample import ResampleError, resize_relative_bias_table
from vitgraph.shapes import Image, TensorType, Tokens, expect_grid, expect_tokens
from vitgraph.vocabulary import DropRate, PosInt, head_width


def effective_window(
    grid: tuple[int, int], window: int, shift: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Per axis: a grid no larger than the window becomes one window and is not shifted
    (§4.1: stage 4 of Swin-T sees a 7x7 map with 7x7 windows)."""
    sizes = tuple(r if r <= window else window for r in grid)
    shifts = tuple(0 if r <= window else shift for r in grid)
    return (sizes[0], sizes[1]), (shifts[0], shifts[1])


class _Dynamic(Block):
    """A Swin block that may read the grid of each input off the image (``dynamic``)."""

    arity = None  # the tokens, and the image when dynamic (checked in infer)
    dynamic: bool = False
    """Take the image as second input (``inputs: [<tokens>, input]``) and run on the grid
    of each input, its sides over ``stride`` rounded up: timm's Swin with
    ``strict_img_size=False``. The types keep the declared size."""
    stride: PosInt | None = None
    """With ``dynamic``: the stride of the tokens it receives over the image (the patch,
    times 2 per patch merging before it)."""

    def check_dynamic(self, tokens: Tokens, inputs: Sequence[TensorType]) -> None:
        if not self.dynamic:
            if len(inputs) > 1:
                raise ShapeError(
                    f"{self.kind} takes one input (the tokens), got {len(inputs)}",
                    hint="a second input (the image) is read only with dynamic: true",
                )
            return
        image = inputs[1] if len(inputs) > 1 else None
        if not isinstance(image, Image) or len(inputs) != 2:
            raise ShapeError(
                f"a dynamic {self.kind} reads the grid off the image, but its second input "
                f"is {image if image is not None else 'missing'}",
                field="dynamic",
                hint="list the image as its second input: inputs: [<tokens>, input]",
            )
        grid = expect_grid(tokens, self.kind)
        stride = self.stride or 0
        if not stride or grid != (-(-image.height // stride), -(-image.width // stride)):
            raise ShapeError(
                f"the {grid[0]}x{grid[1]} grid is not the {image.height}x{image.width} "
                f"image's at stride {self.stride}",
                field="stride",
                hint="stride: the patch times 2 per patch merging before this block",
            )


class _Windowed(_Dynamic):
    """The fields and shape rule both Swin window attentions share."""

    role = "attention"
    weight_init = "trunc_normal_linear"  # timm Swin init_weights_vit_timm
    heads: PosInt
    """Number of heads."""
    window: PosInt = 7
    """Window side in tokens (clamped to the grid when the grid is smaller)."""
    shift: Annotated[int, Field(ge=0)] = 0
    """Cyclic shift in tokens (Swin: window // 2 in every second block; 0: W-MSA)."""
    head_dim: PosInt | None = None
    """Width of each head; default: dim / heads."""
    qkv_bias: bool = True
    """Bias in the qkv projection."""
    attn_drop: DropRate = 0.0
    """Dropout on the attention weights."""
    proj_drop: DropRate = 0.0
    """Dropout after the output projection."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        grid = expect_grid(tokens, self.kind)
        if tokens.prefix:
            raise ShapeError(
                f"window attention takes patch tokens only, but receives {tokens}",
                hint="window attention has no place for a class token",
            )
        self.check_dynamic(tokens, inputs)
        size, shift = effective_window(grid, self.window, self.shift)
        for side, win in zip(grid, size, strict=True):
            if side % win and not self.dynamic:  # a dynamic block pads, as timm
                fits = [d for d in range(1, side + 1) if side % d == 0 and d <= 2 * win]
                raise ShapeError(
                    f"window {self.window} must divide the {grid[0]}x{grid[1]} "
                    f"grid it receives ({side} leaves {side % win})",
                    field="window",
                    hint="use a window from {fits}, or change the input size",
                    fits=fits,
                )
        if any(s >= w for s, w in zip(shift, size, strict=True) if s):
            raise ShapeError(
                f"shift {self.shift} must be smaller than the window {self.window}",
                field="shift",
                hint="Swin shifts by window // 2",
            )
        head_dim = head_width(None, self.heads, self.head_dim, tokens)
        return self.model_copy(update={"head_dim": head_dim}), tokens


@register
class WindowAttention(_Windowed):
    """Multi-head self-attention inside non-overlapping windows, with a learned relative
    position bias per head; ``shift`` > 0 rolls the map first (SW-MSA) and masks the pairs
    that the roll brought together from opposite borders."""

    kind: Literal["shifted_window_attention"] = "shifted_window_attention"
    precompute = True  # the bias gathered by offset and the shifted windows' mask
    no_weight_decay = frozenset({"relative_position_bias_table"})  # as timm's Swin

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and tokens.grid is not None and self.head_dim
        size, shift = effective_window(tokens.grid, self.window, self.shift)
        cls = DynamicShiftedWindowAttention if self.dynamic else ShiftedWindowAttention
        return cls(
            tokens.dim,
            tokens.grid,
            self.heads,
            self.head_dim,
            size,
            shift,
            self.qkv_bias,
            self.attn_drop,
            self.proj_drop,
            stride=self.stride if self.dynamic else None,
        )

    def resample(
        self,
        inputs: Sequence[TensorType],
        name: str,
        table: torch.Tensor,
        target: tuple[int, ...],
        *,
        antialias: bool = True,
        was: Sequence[TensorType] | None = None,
    ) -> torch.Tensor | None:
        """The relative-position bias table of another window, resized as timm's
        ``resize_rel_pos_bias_table`` (stretched offsets, linear)."""
        tokens = inputs[0]
        if not isinstance(tokens, Tokens) or tokens.grid is None or table.ndim != 2:
            return None
        window, _ = effective_window(tokens.grid, self.window, self.shift)
        try:
            out = resize_relative_bias_table(table, window)
        except ResampleError:
            return None
        return out if tuple(out.shape) == target else None


def relative_position_index(win_h: int, win_w: int) -> torch.Tensor:
    """(N, N) index into the ((2h-1)(2w-1), heads) bias table for every pair of window
    positions: the offset (Δrow, Δcol) shifted to be non-negative, row-major (§3.2)."""
    rows, cols = torch.meshgrid(torch.arange(win_h), torch.arange(win_w), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()])  # (2, N)
    delta = coords[:, :, None] - coords[:, None, :]  # (2, N, N)
    return (delta[0] + win_h - 1) * (2 * win_w - 1) + (delta[1] + win_w - 1)


def shifted_window_mask(
    grid: tuple[int, int],
    size: tuple[int, int],
    shift: tuple[int, int],
    device: torch.device | None = None,
) -> torch.Tensor:
    """(windows, 1, N, N) additive mask: -100 between tokens that the cyclic shift brought
    into one window from different regions of the map (Fig. 4), 0 elsewhere."""
    region = torch.zeros(grid, dtype=torch.long, device=device)
    label = 0
    for rows in (
        (0, grid[0] - size[0]),
        (grid[0] - size[0], grid[0] - shift[0]),
        (grid[0] - shift[0], grid[0]),
    ):
        for cols in (
            (0, grid[1] - size[1]),
            (grid[1] - size[1], grid[1] - shift[1]),
            (grid[1] - shift[1], grid[1]),
        ):
            region[rows[0] : rows[1], cols[0] : cols[1]] = label
            label += 1
    windows = partition(region[None, :, :, None], grid, size).squeeze(-1)  # (nW, N)
    differ = windows[:, :, None] != windows[:, None, :]
    return torch.zeros(differ.shape, device=device).masked_fill(differ, -100.0)[:, None]


def partition(x: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, h*w, C), windows in row-major order per image."""
    (rows, cols), (h, w) = grid, size
    x = x.reshape(-1, rows // h, h, cols // w, w, x.shape[-1])
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h * w, x.shape[-1])


def merge(x: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``partition``: (B * windows, h*w, C) -> (B, H, W, C)."""
    (rows, cols), (h, w) = grid, size
    x = x.reshape(-1, rows // h, cols // w, h, w, x.shape[-1])
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, rows, cols, x.shape[-1])


class ShiftedWindowAttention(nn.Module):
    relative_position_index: torch.Tensor  # buffers (register_buffer below)
    attn_mask: torch.Tensor

    def __init__(
        self,
        dim: int,
        grid: tuple[int, int],
        heads: int,
        head_dim: int,
        size: tuple[int, int],
        shift: tuple[int, int],
        qkv_bias: bool,
        attn_drop: float,
        proj_drop: float,
        stride: int | None = None,
    ) -> None:
        super().__init__()
        self.grid, self.size, self.shift, self.stride = grid, size, shift, stride
        self.heads, self.head_dim = heads, head_dim
        self.windows = (grid[0] // size[0]) * (grid[1] // size[1])
        self.area = size[0] * size[1]
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(heads * head_dim, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()
        self.relative_position_bias_table = nn.Parameter(
            torch.empty((2 * size[0] - 1) * (2 * size[1] - 1), heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # Index and mask depend only on the static grid: computed once, never saved.
        self.register_buffer(
            "relative_position_index", relative_position_index(*size).flatten(), persistent=False
        )
        self.shifted = any(shift)
        static = self.shifted and stride is None  # a dynamic block's mask is per input
        mask = shifted_window_mask(grid, size, shift) if static else torch.zeros(0)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = self.grid
        x = x.reshape(-1, rows, cols, x.shape[-1])  # (B, H, W, C)
        if self.shifted:
            x = torch.roll(x, shifts=(-self.shift[0], -self.shift[1]), dims=(1, 2))
        windows = partition(x, self.grid, self.size)  # (B*nW, N, C)
        q, k, v = split_fused(self.qkv(windows), 3, self.heads)  # each (B*nW, heads, N, d)
        bias = self.relative_position_bias_table[self.relative_position_index]
        bias = bias.reshape(self.area, self.area, self.heads).permute(2, 0, 1)  # (heads, N, N)
        if self.shifted:
            # (nW, heads, N, N) repeated for every image: windows are batch-major.
            bias = (bias + self.attn_mask).unsqueeze(0).expand(x.shape[0], -1, -1, -1, -1)
            bias = bias.reshape(-1, self.heads, self.area, self.area)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), dropout_p=self.attn_drop if self.training else 0.0
        )
        out = self.proj_drop(self.proj(merge_heads(out, copy=True)))  # (B*nW, N, C)
        out = merge(out, self.grid, self.size)
        if self.shifted:
            out = torch.roll(out, shifts=self.shift, dims=(1, 2))
        return out.reshape(-1, rows * cols, out.shape[-1])


@torch.fx.wrap
def image_map(x: torch.Tensor, image: torch.Tensor, stride: int) -> torch.Tensor:
    """Tokens (B, rows*cols, C) as the (B, rows, cols, C) map of ``image``'s grid: its
    sides over ``stride``, rounded up (patch merging pads an odd side). An input whose
    tokens are not that grid (a side the patch does not divide) is refused in one line."""
    rows = -(-image.shape[-2] // stride)
    cols = -(-image.shape[-1] // stride)
    if x.shape[1] != rows * cols:
        raise ValueError(
            f"an input of {image.shape[-2]}x{image.shape[-1]} gives {x.shape[1]} tokens, not "
            f"its {rows}x{cols} grid at stride {stride}: its sides must be multiples of the patch"
        )
    return x.reshape(x.shape[0], rows, cols, x.shape[-1])


@torch.fx.wrap
def pad_to_windows(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W, C) zero-padded on the bottom and right to window multiples, as timm's
    ``SwinTransformerBlock._attn``."""
    pad_h = (size[0] - x.shape[1] % size[0]) % size[0]
    pad_w = (size[1] - x.shape[2] % size[1]) % size[1]
    return F.pad(x, (0, 0, 0, pad_w, 0, pad_h))


@torch.fx.wrap
def window_mask(x: torch.Tensor, size: tuple[int, int], shift: tuple[int, int]) -> torch.Tensor:
    """``shifted_window_mask`` of the (B, H, W, C) padded map ``x``, on its device."""
    grid = (int(x.shape[1]), int(x.shape[2]))
    return shifted_window_mask(grid, size, shift, x.device)


@torch.fx.wrap
def crop_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, H', W', C) cut to the rows and columns of ``like`` (the padding dropped)."""
    return x[:, : like.shape[1], : like.shape[2]].contiguous()


@torch.fx.wrap
def pad_to_even(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) zero-padded by one row / column where a side is odd, as timm's
    ``PatchMerging``."""
    return F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))


def dynamic_windows(
    x: torch.Tensor,
    image: torch.Tensor,
    stride: int,
    size: tuple[int, int],
    shift: tuple[int, int],
    attend: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
) -> torch.Tensor:
    """Window attention on the grid of ``image`` (timm's ``_attn`` under
    ``strict_img_size=False``): roll, pad to window multiples, ``attend(windows, mask)``
    with the mask of the padded map, merge, crop, roll back. No branch on a size: the
    size-dependent steps are leaf functions."""
    x = image_map(x, image, stride)  # (B, H, W, C)
    shifted = any(shift)
    if shifted:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    padded = pad_to_windows(x, size)  # (B, H', W', C)
    h, w = size
    windows = padded.unflatten(1, (-1, h)).unflatten(3, (-1, w))  # (B, H'/h, h, W'/w, w, C)
    windows = windows.permute(0, 1, 3, 2, 4, 5).reshape(-1, h * w, x.shape[-1])
    out = attend(windows, window_mask(padded, size, shift) if shifted else None)
    out = out.reshape(padded.shape[0], padded.shape[1] // h, padded.shape[2] // w, h, w, -1)
    out = crop_to(out.permute(0, 1, 3, 2, 4, 5).flatten(3, 4).flatten(1, 2), x)
    if shifted:
        out = torch.roll(out, shifts=shift, dims=(1, 2))
    return out.flatten(1, 2)


def windows_bias(bias: torch.Tensor, mask: torch.Tensor | None, count: int) -> torch.Tensor:
    """The (heads, N, N) bias plus the (nW, 1, N, N) mask of shifted windows, repeated
    for every image of the ``count`` (B * nW) windows (batch-major); the bias alone
    without a mask."""
    if mask is None:
        return bias
    heads, area = bias.shape[0], bias.shape[-1]
    both = (bias + mask).unsqueeze(0).expand(count // mask.shape[0], -1, -1, -1, -1)
    return both.reshape(-1, heads, area, area)


class DynamicShiftedWindowAttention(ShiftedWindowAttention):
    """``ShiftedWindowAttention`` on the grid of each input (``dynamic_windows``)."""

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        assert self.stride is not None
        return dynamic_windows(x, image, self.stride, self.size, self.shift, self.attend)

    def attend(self, windows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = split_fused(self.qkv(windows), 3, self.heads)  # each (B*nW, heads, N, d)
        bias = self.relative_position_bias_table[self.relative_position_index]
        bias = bias.reshape(self.area, self.area, self.heads).permute(2, 0, 1)  # (heads, N, N)
        bias = windows_bias(bias, mask, windows.shape[0])
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(merge_heads(out, copy=True)))  # (B*nW, N, C)


@register
class PatchMerging(_Dynamic):
    """Concatenate each 2x2 group of neighbouring tokens (4C), LayerNorm, and project
    linearly without bias to ``out_dim`` (§3.1): the grid halves, the width doubles.
    ``norm_last``: project first, then LayerNorm the output width (Swin v2,
    arXiv:2111.09883, timm's ``swin_transformer_v2.PatchMerging``)."""

    kind: Literal["patch_merging"] = "patch_merging"
    role = "tokenizer"
    weight_init = "trunc_normal_linear"  # timm Swin init_weights_vit_timm
    out_dim: PosInt | None = None
    """Output width; default: twice the input's."""
    norm_eps: Annotated[float, Field(gt=0)] = 1e-5
    """Epsilon of the LayerNorm."""
    norm_last: bool = False
    """LayerNorm after the projection, over ``out_dim`` (Swin v2) instead of before it."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        rows, cols = expect_grid(tokens, self.kind)
        if tokens.prefix:
            raise ShapeError(f"patch merging takes patch tokens only, but receives {tokens}")
        self.check_dynamic(tokens, inputs)
        out = self.out_dim or 2 * tokens.dim
        # An odd side is zero-padded by one row / column first, as timm does.
        grid = ((rows + 1) // 2, (cols + 1) // 2)
        return self.model_copy(update={"out_dim": out}), Tokens(out, grid)

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens) and tokens.grid is not None and self.out_dim
        if self.dynamic:
            assert self.stride is not None
            return DynamicMergePatches(
                tokens.dim, self.out_dim, tokens.grid, self.norm_eps, self.norm_last, self.stride
            )
        return MergePatches(tokens.dim, self.out_dim, tokens.grid, self.norm_eps, self.norm_last)


class MergePatches(nn.Module):
    def __init__(
        self, dim: int, out_dim: int, grid: tuple[int, int], eps: float, norm_last: bool = False
    ) -> None:
        super().__init__()
        self.grid, self.norm_last = grid, norm_last
        self.norm = nn.LayerNorm(out_dim if norm_last else 4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = self.grid
        x = x.reshape(-1, rows, cols, x.shape[-1])
        if rows % 2 or cols % 2:
            x = F.pad(x, (0, 0, 0, cols % 2, 0, rows % 2))
            rows, cols = rows + rows % 2, cols + cols % 2
        x = x.reshape(-1, rows // 2, 2, cols // 2, 2, x.shape[-1])  # (B, H/2, dh, W/2, dw, C)
        # Concatenation order (dh, dw) = (0,0), (1,0), (0,1), (1,1): the paper's x0..x3.
        x = x.permute(0, 1, 3, 4, 2, 5).reshape(-1, (rows // 2) * (cols // 2), 4 * x.shape[-1])
        if self.norm_last:
            return self.norm(self.reduction(x))
        return self.reduction(self.norm(x))


class DynamicMergePatches(MergePatches):
    """``MergePatches`` on the grid of each input, an odd side padded per input."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        grid: tuple[int, int],
        eps: float,
        norm_last: bool,
        stride: int,
    ) -> None:
        super().__init__(dim, out_dim, grid, eps, norm_last)
        self.stride = stride

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = pad_to_even(image_map(x, image, self.stride))  # (B, H, W, C), even sides
        x = x.unflatten(1, (-1, 2)).unflatten(3, (-1, 2))  # (B, H/2, dh, W/2, dw, C)
        x = x.permute(0, 1, 3, 4, 2, 5).flatten(3).flatten(1, 2)  # (B, H/2 * W/2, 4C)
        if self.norm_last:
            return self.norm(self.reduction(x))
        return self.reduction(self.norm(x))
