"""Weights into a compiled model: vitgraph safetensors, timm checkpoints, and the weights
of an earlier build of an edited graph.

``load_weights`` reads safetensors (vitgraph's own, with the spec in the metadata, or
timm's) or a ``.pth`` through ``torch.load(weights_only=True)`` (never pickle code),
maps timm keys through the same converter as ``from_timm``, and reports every missing,
unexpected and mis-shaped key. Two mismatches are expected and handled as timm handles
them: a position table of another resolution is resampled (per block kind, see
``resampler``), and a classifier for another class count is left freshly initialised
with a warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitgraph.model_api import classifier_ids, graph_of
from vitgraph.registry import Block
from vitgraph.shapes import TensorType, Tokens

#: the ``vitgraph_format`` metadata value ``save_weights`` writes
WEIGHTS_FORMAT = "1"


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model (strict loading)."""


@dataclass
class LoadReport:
    """What ``load_weights`` did with each key."""

    format: str  # "vitgraph" or "timm"
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys the checkpoint lacks
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys with no place
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list
    )  # (key, checkpoint shape, model shape)
    resampled: list[str] = field(default_factory=list)  # position tables resized
    reset: list[str] = field(default_factory=list)  # classifier keys left freshly initialised

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"{len(self.loaded)} tensors loaded from a {self.format} checkpoint"]
        for label, keys in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("resampled", self.resampled),
            ("head reset", self.reset),
        ):
            if keys:
                lines.append(f"{label}: {', '.join(keys)}")
        for key, theirs, ours in self.mismatched:
            lines.append(f"mismatched: {key} is {theirs} in the checkpoint, {ours} in the model")
        return "\n".join(lines)


# ------------------------------------------------------------------ resampling per kind

Resampler = Callable[[Block, TensorType, torch.Tensor, tuple[int, ...], Any], torch.Tensor | None]
_RESAMPLERS: dict[str, Resampler] = {}


def resampler(*kinds: str) -> Callable[[Resampler], Resampler]:
    """Declare how a block kind's table is resized to a new input (for new families:
    relative-position bias tables and the like)."""

    def declare(fn: Resampler) -> Resampler:
        for kind in kinds:
            _RESAMPLERS[kind] = fn
        return fn

    return declare


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
            raise CheckpointError(
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


@resampler("learned_pos")
def _resample_learned(
    block: Block, tokens: TensorType, table: torch.Tensor, target: tuple[int, ...], options: Any
) -> torch.Tensor | None:
    if not isinstance(tokens, Tokens) or table.ndim != 3:
        return None
    prefix = tokens.prefix if getattr(block, "include_prefix", True) else 0
    grid = tokens.grid
    if grid is None:  # patch tokens that lost their grid type (TNT's word projection)
        side = math.isqrt(target[1] - prefix)
        if side * side != target[1] - prefix:
            return None
        grid = (side, side)
    try:
        out = resample_grid_table(table, grid, None, prefix, options["antialias"])
    except CheckpointError:  # not a square grid of patches: another model's table
        return None
    return out if tuple(out.shape) == target else None


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
            raise CheckpointError(
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


@resampler("shifted_window_attention")
def _resample_window_bias(
    block: Block, tokens: TensorType, table: torch.Tensor, target: tuple[int, ...], options: Any
) -> torch.Tensor | None:
    from vitgraph.blocks.swin import effective_window

    if not isinstance(tokens, Tokens) or tokens.grid is None or table.ndim != 2:
        return None
    window, _ = effective_window(
        tokens.grid, getattr(block, "window", 7), getattr(block, "shift", 0)
    )
    try:
        out = resize_relative_bias_table(table, window)
    except CheckpointError:
        return None
    return out if tuple(out.shape) == target else None


def resize_offset_table(
    table: torch.Tensor, new_side: tuple[int, int], antialias: bool = True
) -> torch.Tensor:
    """LeViT's (heads, rows*cols) bias per absolute offset (|dy|, |dx|) at a new
    resolution: bicubic on the (square) offset grid, as timm's
    ``resize_rel_pos_bias_table_levit`` (TinyViT's checkpoint filter) does."""
    heads, positions = table.shape
    side = math.isqrt(positions)
    if side * side != positions:
        raise CheckpointError(f"cannot resample a {positions}-offset bias table: not square")
    if (side, side) == tuple(new_side):
        return table
    grid = table.float().reshape(1, heads, side, side)
    out = F.interpolate(grid, size=new_side, mode="bicubic", antialias=antialias)
    return out.reshape(heads, -1).to(table.dtype)


@resampler("levit_attention", "levit_subsample_attention")
def _resample_offset_bias(
    block: Block, tokens: TensorType, table: torch.Tensor, target: tuple[int, ...], options: Any
) -> torch.Tensor | None:
    side = getattr(block, "table", None)
    if side is None or table.ndim != 2:
        return None
    try:
        out = resize_offset_table(table, tuple(side), options["antialias"])
    except CheckpointError:
        return None
    return out if tuple(out.shape) == target else None


def resize_offset_rows(table: torch.Tensor, rows: int) -> torch.Tensor:
    """BoTNet's 1-D relative tables ``height_rel`` / ``width_rel`` (2H-1, d), one row per
    offset -(H-1)..H-1, for ``rows`` = 2H'-1 offsets: linear along the offsets with the
    end points kept, so offset 0 stays at the centre. timm has no resampler for these
    tables (its BoTNets are fixed-size), so this one is vitgraph's choice."""
    if table.shape[0] == rows:
        return table
    out = F.interpolate(table.float().t()[None], size=rows, mode="linear", align_corners=True)
    return out[0].t().contiguous().to(table.dtype)


@resampler("bot_bottleneck")
def _resample_bot_tables(
    block: Block, image: TensorType, table: torch.Tensor, target: tuple[int, ...], options: Any
) -> torch.Tensor | None:
    if table.ndim != 2 or len(target) != 2 or table.shape[1] != target[1] or target[0] % 2 == 0:
        return None
    return resize_offset_rows(table, target[0])


# ------------------------------------------------------------------------- reading


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state_dict, safetensors metadata) of a checkpoint file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        from vitgraph.weights import read_header

        read_header(path)  # a broken file is refused saying what is wrong with it

        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
        return state, metadata
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model", "module"):  # trainer checkpoints nest the weights
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
            break
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a state_dict")
    state = {k.removeprefix("module."): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    return state, {}


def _timm_conversion(timm_name: str) -> Any:
    """``from_timm``'s key mapping for a timm architecture (built on meta: no memory)."""
    import timm

    from vitgraph.interop.timm import _CONVERTERS, _load_converters, refuse

    _load_converters()
    with torch.device("meta"):
        reference = timm.create_model(timm_name, pretrained=False)
    cls = type(reference).__name__
    if cls not in _CONVERTERS:
        raise refuse(reference, f"model class {cls}")
    return _CONVERTERS[cls](reference)


def owner(key: str, node_ids: set[str]) -> str | None:
    """The node a state_dict key belongs to (the longest node id that prefixes it)."""
    parts = key.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        if prefix in node_ids:
            return prefix
    return None


# ------------------------------------------------------------------------- loading


def load_weights(
    model: nn.Module,
    path: str | Path,
    *,
    timm_name: str | None = None,
    strict: bool = True,
    antialias: bool = True,
) -> LoadReport:
    """Load a checkpoint into ``model`` and report every key that did not fit.

    vitgraph safetensors (``save_weights``) load as they are; any other file is read as a
    timm checkpoint, whose keys go through the converter of ``timm_name`` (the timm
    architecture it was saved from) or, without one, unchanged (vitgraph names its nodes
    as timm does). ``strict``: raise ``CheckpointError`` if keys are missing, unexpected
    or mis-shaped after resampling and head reset.
    """
    state, metadata = read_checkpoint(path)
    fmt = "vitgraph" if "vitgraph_format" in metadata else "timm"
    if fmt == "vitgraph" and metadata["vitgraph_format"] != WEIGHTS_FORMAT:
        raise CheckpointError(
            f"{path} has vitgraph weights format "
            f"{metadata['vitgraph_format']}; this vitgraph reads "
            f"{WEIGHTS_FORMAT} (upgrade vitgraph)"
        )
    if fmt == "timm" and timm_name is not None:
        conversion = _timm_conversion(timm_name)
        state = {conversion.rename(k): conversion.convert(k, v) for k, v in state.items()}
    report = LoadReport(fmt)
    graph = graph_of(model)
    nodes = {n.id: n for n in graph.nodes}
    heads = set(classifier_ids(model))
    target = model.state_dict()
    accepted: dict[str, torch.Tensor] = {}
    order = [k for k in target if k in state] + [k for k in state if k not in target]
    for key in order:  # reported in the model's order, not the file's (safetensors sorts)
        tensor = state[key]
        if key not in target:
            report.unexpected.append(key)
            continue
        want = tuple(target[key].shape)
        if tuple(tensor.shape) != want:
            node_id = owner(key, set(nodes))
            node = nodes.get(node_id) if node_id else None
            fn = _RESAMPLERS.get(node.kind) if node is not None else None
            resized = (
                fn(
                    node.params,
                    graph.type_of(node.inputs[0]),
                    tensor,
                    want,
                    {"antialias": antialias},
                )
                if fn is not None and node
                else None
            )
            if resized is not None:
                tensor = resized
                report.resampled.append(key)
            elif node_id in heads:
                report.reset.append(key)
                continue
            else:
                report.mismatched.append((key, tuple(tensor.shape), want))
                continue
        accepted[key] = tensor
    if report.reset:
        warnings.warn(
            f"the checkpoint's classifier does not fit this model's "
            f"{model_classes(model)} classes: {', '.join(report.reset)} re-initialised",
            stacklevel=2,
        )
    done = set(accepted) | set(report.reset) | {k for k, _, _ in report.mismatched}
    report.missing = [k for k in target if k not in done]
    report.loaded = list(accepted)
    if strict and not report.ok:
        raise CheckpointError(f"{path} does not fit the model:\n{report}")
    model.load_state_dict(accepted, strict=False)
    return report


def model_classes(model: nn.Module) -> int:
    return int(getattr(model, "num_classes", 0))


# --------------------------------------------------------------------- carrying over


@dataclass
class CarryReport:
    """What ``Graph.build(weights_from=old)`` copied and what it left freshly drawn."""

    carried: list[str]
    reinitialized: list[str]


def carry_weights(model: nn.Module, old: nn.Module) -> CarryReport:
    """Copy from ``old`` every state_dict entry whose node (same id, same kind) and shape
    are unchanged; everything else keeps its fresh init."""
    new_graph, old_graph = graph_of(model), graph_of(old)
    new_kinds = {n.id: n.kind for n in new_graph.nodes}
    old_kinds = {n.id: n.kind for n in old_graph.nodes}
    new_ids, old_ids = set(new_kinds), set(old_kinds)
    source = old.state_dict()
    copied: dict[str, torch.Tensor] = {}
    reinitialized = []
    for key, tensor in model.state_dict().items():
        node_id = owner(key, new_ids)
        theirs = source.get(key)
        if (
            theirs is not None
            and node_id is not None
            and owner(key, old_ids) == node_id
            and old_kinds[node_id] == new_kinds[node_id]
            and theirs.shape == tensor.shape
        ):
            copied[key] = theirs
        else:
            reinitialized.append(key)
    model.load_state_dict(copied, strict=False)
    return CarryReport(list(copied), reinitialized)
