"""Resampling of position and relative-position tables to another input size: the shared
math every block kind's ``resample`` hook calls (as timm's ``layers/pos_embed*.py``).

Each function maps an old table to the shape a new grid or window needs, the way timm's
own resizers do it, so a checkpoint loaded at another resolution gives timm's logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class ResampleError(ValueError):
    """A table whose layout cannot be read (not a square grid, an unknown window)."""


def resample_grid_table(
    table: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None,
    prefix: int,
    antialias: bool = True,
) -> torch.Tensor:
    """Resize a (1, prefix + rows*cols, D) table to ``new_grid``, keeping the prefix rows,
    as timm's ``resample_abs_pos_embed`` does: bicubic in float32 on the (rows, cols) grid
    (a square old grid unless given), ``antialias`` as timm's checkpoint filter passes it."""
    patches = table.shape[1] - prefix
    if old_grid is None:
        side = math.isqrt(patches)
        if side * side != patches:
            raise ResampleError(
                f"cannot resample a table of {patches} patch rows: not a square grid"
            )
        old_grid = (side, side)
    dim = table.shape[-1]
    head, grid = table[:, :prefix], table[:, prefix:]
    grid = grid.float().reshape(1, *old_grid, dim).permute(0, 3, 1, 2)  # (1, D, rows, cols)
    grid = F.interpolate(
        grid, size=new_grid, mode="bicubic", antialias=antialias, align_corners=False
    )
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(table.dtype)
    return torch.cat([head, grid], dim=1)


# Relative-position bias tables. Swin's table holds one bias per head and window offset,
# ((2h-1)(2w-1), heads); a new window needs offsets the old table never saw, so timm's
# ``resize_rel_pos_bias_table`` (after BEiT's fine-tuning code) places the old offsets on a
# geometric progression that stretches to the new window's extent and interpolates
# linearly there: the offsets near 0, which matter most, keep their spacing.


def _stretched_offsets(src: int, dst: int) -> torch.Tensor:
    """Positions for a source axis of ``src`` offsets (-(src//2)..src//2): unit steps that
    grow by a ratio q, q chosen by bisection so the outermost lands at ``dst // 2``."""
    half, reach = src // 2, dst // 2
    low, high = 1.01, 1.5
    while high - low > 1e-6:
        q = (low + high) / 2
        if (1 - q**half) / (1 - q) > reach:  # sum of the first `half` steps, 1 + q + ...
            high = q
        else:
            low = q
    steps, pos = [], 1.0
    for k in range(half):
        steps.append(pos)
        pos += q ** (k + 1)
    return torch.tensor([-p for p in reversed(steps)] + [0.0] + steps)


def _linear_on_grid(
    values: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    at_rows: torch.Tensor,
    at_cols: torch.Tensor,
) -> torch.Tensor:
    """Bilinear interpolation of (..., R, C) ``values`` given at the (unevenly spaced)
    ``rows`` x ``cols`` positions, at every (at_rows[i], at_cols[j]); outside the
    positions the edge value is kept."""

    def bracket(pos: torch.Tensor, at: torch.Tensor) -> tuple[torch.Tensor, ...]:
        right = torch.searchsorted(pos, at).clamp(max=len(pos) - 1)
        left = (right - 1).clamp(min=0)
        span = pos[right] - pos[left]
        t = torch.where(span > 0, (at - pos[left]) / torch.where(span > 0, span, 1), 0.5)
        return left, right, t.clamp(0, 1)

    r0, r1, tr = bracket(rows, at_rows)
    c0, c1, tc = bracket(cols, at_cols)
    tr, tc = tr[:, None], tc[None, :]
    top = (
        values[..., r0[:, None], c0[None, :]] * (1 - tc)
        + values[..., r0[:, None], c1[None, :]] * tc
    )
    bottom = (
        values[..., r1[:, None], c0[None, :]] * (1 - tc)
        + values[..., r1[:, None], c1[None, :]] * tc
    )
    return top * (1 - tr) + bottom * tr


def resize_relative_bias_table(
    table: torch.Tensor, new_window: tuple[int, int], old_window: tuple[int, int] | None = None
) -> torch.Tensor:
    """A ((2h-1)(2w-1), heads) relative-position bias table for ``new_window``, as timm's
    ``resize_rel_pos_bias_table`` makes it (linear interpolation on stretched offsets);
    the old window is square unless given."""
    dst = (2 * new_window[0] - 1, 2 * new_window[1] - 1)
    positions, heads = table.shape
    if old_window is not None:
        src = (2 * old_window[0] - 1, 2 * old_window[1] - 1)
    else:
        side = math.isqrt(positions)
        if side * side == positions:
            src = (side, side)
        elif positions == dst[0] * dst[1]:
            src = dst
        else:
            raise ResampleError(
                f"cannot tell the window of a {positions}-row relative bias table: not square"
            )
    if src == dst:
        return table
    grid = table.float().t().reshape(heads, *src)
    at = [torch.arange(-(d // 2), d // 2 + 0.1, 1.0) for d in dst]
    out = _linear_on_grid(
        grid, _stretched_offsets(src[0], dst[0]), _stretched_offsets(src[1], dst[1]), *at
    )
    return out.reshape(heads, -1).t().contiguous().to(table.dtype)


def resize_offset_table(
    table: torch.Tensor, new_side: tuple[int, int], antialias: bool = True
) -> torch.Tensor:
    """LeViT's (heads, rows*cols) bias per absolute offset (|dy|, |dx|) at a new
    resolution: bicubic on the (square) offset grid, as timm's
    ``resize_rel_pos_bias_table_levit`` (TinyViT's checkpoint filter) does."""
    heads, positions = table.shape
    side = math.isqrt(positions)
    if side * side != positions:
        raise ResampleError(f"cannot resample a {positions}-offset bias table: not square")
    if (side, side) == tuple(new_side):
        return table
    grid = table.float().reshape(1, heads, side, side)
    out = F.interpolate(grid, size=new_side, mode="bicubic", antialias=antialias)
    return out.reshape(heads, -1).to(table.dtype)


def resize_offset_rows(table: torch.Tensor, rows: int) -> torch.Tensor:
    """BoTNet's 1-D relative tables ``height_rel`` / ``width_rel`` (2H-1, d), one row per
    offset -(H-1)..H-1, for ``rows`` = 2H'-1 offsets: linear along the offsets with the
    end points kept, so offset 0 stays at the centre. timm has no resampler for these
    tables (its BoTNets are fixed-size), so this one is vitgraph's choice."""
    if table.shape[0] == rows:
        return table
    out = F.interpolate(table.float().t()[None], size=rows, mode="linear", align_corners=True)
    return out[0].t().contiguous().to(table.dtype)
