"""timm's current model contract on a compiled model: ``forward_intermediates`` and
``feature_info`` (timm's ``_features.py``), read from the validated spec
(``prune_intermediate_layers`` cuts the model: ``vitgraph.model.pruning``).

What an *intermediate* is follows timm's choice for each family, derived from the inferred
types alone (nothing here knows a kind or a spec by name). The candidates are the
top-level repeat instances and composite nodes on the trunk (what ``forward_features``
is computed from) whose output is spatial (tokens on a grid, or a map); a unit whose
output passes its input's patch tokens on unchanged (CaiT's class-attention layers:
the kind declares ``patch_tokens_from``) is left out. When every candidate outputs the
same type the model is *plain* and each instance of its largest repeat group is an
intermediate (ViT, DeiT, CaiT, TNT: timm's ``blocks.{i}``; T2T-ViT's blocks, not its
tokens-to-token module); otherwise the model is *hierarchical* and the intermediates are
the last unit at each resolution and width (Swin's ``layers.{i}``, PVT's ``stages.{i}``,
Twins' four stages, PiT's ``transformers.{i}``, LeViT's three stages: timm's stage
outputs).

Intermediates are returned as timm does: the prefix tokens removed, as ``(B, C, H, W)``
maps (``output_fmt='NCHW'``) or ``(B, L, C)`` tokens (``'NLC'``); ``norm=True`` passes
each through the model's final norm where that norm fits it (its width, and a feature
layout that keeps the patch tokens: not PiT's, whose norm only ever sees the class
tokens), as timm's ViT (every intermediate) and Swin / Twins (the last stage only).
As timm's ViT: ``return_prefix_tokens`` pairs each intermediate with its prefix tokens
``(B, P, C)`` (class, distillation, register tokens; after the norm) when the model has
any, and ``output_dict`` returns ``{'image_intermediates', 'image_intermediates_prefix'
(with return_prefix_tokens), 'image_features' (unless intermediates_only)}``.

``stop_early`` without ``intermediates_only`` stops the trunk after the last unit asked
for, and the final features are computed from that unit's output as timm's families
compute them: where it has the last unit's type (a plain model) everything after the
trunk runs on it (ViT's final norm, CaiT's class attention); where it does not (a
hierarchical model stopped at an earlier stage) the final norm, sized for the last
stage, is skipped and the unit's output is laid out as ``forward_features`` lays out the
features (Swin's NHWC map, PiT's class tokens) or as the next stage reads it (Twins'
map), as timm's Swin, PiT and Twins return it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx

from vitgraph.ir import INPUT, Validated
from vitgraph.model.layout import (
    cache,
    cached_layout,
    emit_layout,
    feature_nodes,
    graph_of,
    grid_of_input,
    input_grids,
)
from vitgraph.model.segments import _plan, _prune, _unit_fn, feature_types
from vitgraph.shapes import Image, TensorType, Tokens

OUTPUT_FORMATS = ("NCHW", "NLC")


# ------------------------------------------------------------------ what the units are


def intermediate_units(graph: Validated) -> list[str]:
    """The ids of the units whose outputs are the model's intermediates (module docstring),
    in execution order; empty when the model has none."""
    by_id = {n.id: n for n in graph.nodes}
    trunk: set[str] = set()
    stack = [graph.resolve(f) for f in feature_nodes(graph)]
    while stack:
        current = stack.pop()
        if current in trunk or current not in by_id:
            continue
        trunk.add(current)
        stack.extend(by_id[current].inputs)
    units: list[str] = []
    for node in graph.nodes:
        if node.id not in trunk:
            continue
        unit = node.top
        if unit not in units and (unit in graph.aliases or node.group is not None):
            units.append(unit)  # a repeat instance, a composite node (used once)
    candidates = [u for u in units if _spatial(graph.type_of(u)) and not _passes_patches(graph, u)]
    signatures = [signature(graph.type_of(u)) for u in candidates]
    if len(set(signatures)) <= 1:
        return _largest_group(candidates)
    return [
        unit
        for k, unit in enumerate(candidates)
        if k + 1 == len(candidates) or signatures[k + 1] != signatures[k]
    ]


def _largest_group(units: list[str]) -> list[str]:
    """Of a plain model's units, the instances of its largest repeat group (the blocks,
    not T2T-ViT's tokens-to-token module before them); all of them if none repeats."""
    groups: dict[str, list[str]] = {}
    for unit in units:
        group, _, index = unit.rpartition(".")
        if group and index.isdigit():
            groups.setdefault(group, []).append(unit)
    if not groups:
        return units
    return max(groups.values(), key=len)


def _spatial(kind: TensorType) -> bool:
    if isinstance(kind, Image):
        return True
    return isinstance(kind, Tokens) and _grid(kind) is not None


def _grid(kind: Tokens) -> tuple[int, int] | None:
    """The patch grid; a square one for tokens that lost theirs on the way but count a
    square number of patches (TNT's)."""
    if kind.grid is not None:
        return kind.grid
    side = math.isqrt(kind.patches)
    return (side, side) if kind.patches > 1 and side * side == kind.patches else None


def signature(kind: TensorType) -> tuple[int, ...]:
    """Resolution and width (not the prefix count: PVT's class token joins a stage)."""
    if isinstance(kind, Image):
        return kind.shape
    assert isinstance(kind, Tokens)
    return (*(_grid(kind) or ()), kind.dim)


def _passes_patches(graph: Validated, unit: str) -> bool:
    """The unit's output node passes its input's patch tokens on unchanged (its kind's
    ``patch_tokens_from`` input lies outside the unit)."""
    node = graph.node(graph.resolve(unit))
    index = type(node.params).patch_tokens_from
    if index is None:
        return False
    source = node.inputs[index]
    return source == INPUT or not source.startswith(unit + ".")


def take_indices(count: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's ``feature_take_indices``: None takes every one, an int the last n, a sequence
    those (negative from the end); returns the indices and the largest."""
    if indices is None:
        indices = count
    if isinstance(indices, int):
        if not 0 < indices <= count:
            raise ValueError(f"last-n ({indices}) is out of range (1 to {count})")
        taken = [count - indices + i for i in range(indices)]
    else:
        taken = []
        for i in indices:
            index = count + i if i < 0 else i
            if not 0 <= index < count:
                raise ValueError(f"feature index {index} is out of range (0 to {count - 1})")
            taken.append(index)
        if not taken:
            raise ValueError("indices is an empty sequence: name at least one unit")
    return taken, max(taken)


def units_of(model: fx.GraphModule) -> list[str]:
    entry = cache(model)
    if "units" not in entry:
        entry["units"] = intermediate_units(graph_of(model))
    return entry["units"]


def units_or_refuse(model: fx.GraphModule) -> list[str]:
    units = units_of(model)
    if not units:
        raise NotImplementedError(
            f"{graph_of(model).name}: this model has no repeated units on a spatial grid "
            "to take intermediates from"
        )
    return units


def refuse_torchscript(model: Any) -> Any:
    """``torch.jit.script(model)`` calls ``__prepare_scriptable__`` first: one clear
    refusal instead of TorchScript's error deep inside a block (the blocks use Python
    TorchScript cannot compile: variadic tuples, optional caches, einops)."""
    name = getattr(model, "variant", None) or getattr(model, "spec_name", "") or "model"
    raise NotImplementedError(
        f"torch.jit.script({name}): TorchScript is not supported for vitgraph models\n"
        "  hint: use torch.export.export(model, (x,)) or `vitgraph export SPEC --format "
        "pt2|onnx` (torch.compile works too)"
    )


# ------------------------------------------------------------------ feature_info


class FeatureInfo(list[dict[str, Any]]):
    """timm's feature info: a list of ``{num_chs, reduction, module}`` dicts (what timm's
    models hold as ``feature_info``) with the accessors of timm's ``FeatureInfo``
    (``channels()``, ``reduction()``, ``module_name()``) that ``features_only`` models
    answer."""

    def __init__(self, infos: Sequence[dict[str, Any]], out_indices: Sequence[int] = ()) -> None:
        super().__init__(infos)
        self.out_indices = tuple(out_indices) or tuple(range(len(infos)))

    def _get(self, key: str, idx: int | Sequence[int] | None) -> Any:
        if idx is None:
            return [self[i][key] for i in range(len(self))]
        if isinstance(idx, int):
            return self[idx][key]
        return [self[i][key] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        return self._get("module", idx)

    def get_dicts(self, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return [dict(d) if keys is None else {k: d[k] for k in keys} for d in self]


def feature_info(model: fx.GraphModule) -> FeatureInfo:
    """One entry per intermediate: its width, its stride from the input, its unit."""
    graph = graph_of(model)
    source = graph.input_type
    height = source.shape[-2] if isinstance(source, Image) else None
    infos: list[dict[str, Any]] = []
    previous: tuple[int, int] | None = None  # (rows, reduction) of the unit before
    for unit in units_of(model):
        kind = graph.type_of(unit)
        if isinstance(kind, Image):
            rows, channels = kind.height, kind.channels
        else:
            assert isinstance(kind, Tokens)  # a unit is spatial: a map or tokens on a grid
            rows, channels = (_grid(kind) or (1, 1))[0], kind.dim
        if previous is None:
            reduction = _reduction(height, rows) if height else 1
        else:  # a stage halves the grid: timm's nominal stride, even where it padded
            reduction = previous[1] * max(1, round(previous[0] / rows))
        previous = (rows, reduction)
        infos.append({"num_chs": channels, "reduction": reduction, "module": unit})
    return FeatureInfo(infos)


def _reduction(height: int, rows: int) -> int:
    """The stride of the first grid, ``rows`` over ``height`` pixels: exact when it
    divides, else the nearest integer — the patch convolution's stride, as timm reports
    it, whether its kernel overlaps (PiT-B: kernel 14, stride 7, 31 rows at 224 px) or it
    padded (a 13-row grid of a stride-8 patch over 100 px)."""
    if height % rows == 0:
        return height // rows
    return max(1, round(height / rows))


# ------------------------------------------------------------------ the fx pieces


def tokens_to_map(x: torch.Tensor, *, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """Patch tokens (B, prefix + H*W, C) as a (B, C, H, W) map."""
    return x[:, prefix:].unflatten(1, grid).permute(0, 3, 1, 2).contiguous()


def drop_prefix(x: torch.Tensor, *, prefix: int) -> torch.Tensor:
    """Patch tokens (B, H*W, C) without the prefix tokens."""
    return x[:, prefix:]


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """A (B, C, H, W) map as (B, H*W, C) tokens."""
    return x.flatten(2).transpose(1, 2)


def take_prefix(x: torch.Tensor, *, prefix: int) -> torch.Tensor:
    """The prefix tokens (B, P, C) of tokens (B, P + H*W, C)."""
    return x[:, :prefix]


def no_prefix(x: torch.Tensor) -> torch.Tensor:
    """A map's (absent) prefix tokens: (B, 0, C)."""
    return x.new_zeros(x.shape[0], 0, x.shape[1])


def _emit_prefix(graph: fx.Graph, value: fx.Node, kind: TensorType) -> fx.Node:
    if isinstance(kind, Tokens):
        return graph.call_function(take_prefix, (value,), {"prefix": kind.prefix})
    return graph.call_function(no_prefix, (value,))


def tokens_to_input_map(
    x: torch.Tensor, image: torch.Tensor, *, prefix: int, stride: tuple[int, int], pad: bool
) -> torch.Tensor:
    """``tokens_to_map`` on the grid of this input (a dynamic size): its sides over the
    ``stride``, rounded up where the model pads."""
    grid = grid_of_input(image, stride, pad)
    return x[:, prefix:].unflatten(1, grid).permute(0, 3, 1, 2).contiguous()


def _emit_format(
    graph: fx.Graph, value: fx.Node, kind: TensorType, fmt: str, image: Any = None
) -> fx.Node:
    """``image``: (the input's fx node, ``input_grids``) of a dynamic-size model."""
    if isinstance(kind, Image):
        return value if fmt == "NCHW" else graph.call_function(map_to_tokens, (value,))
    assert isinstance(kind, Tokens)
    if fmt == "NLC":
        return graph.call_function(drop_prefix, (value,), {"prefix": kind.prefix})
    found = image[1].get(kind.grid) if image is not None and kind.grid else None
    if found is not None:  # a grid of this input
        keywords = {"prefix": kind.prefix, "stride": found[0], "pad": found[1]}
        return graph.call_function(tokens_to_input_map, (value, image[0]), keywords)
    return graph.call_function(
        tokens_to_map, (value,), {"prefix": kind.prefix, "grid": _grid(kind)}
    )


def final_norm(model: fx.GraphModule) -> str | None:
    """The spec node of the model's final norm: the (one) feature node when its kind is a
    norm and the feature layout keeps the patch tokens; None otherwise."""
    graph = graph_of(model)
    lay = cached_layout(model)
    if len(lay.features) != 1:
        return None
    node = graph.node(graph.resolve(lay.features[0]))
    fmt = lay.formats[0]
    if type(node.params).role != "norm" or (fmt is not None and fmt.back is None):
        return None
    return node.id


def norm_fits(graph: Validated, norm: str | None, unit: str) -> bool:
    if norm is None:
        return False
    before = graph.type_of(graph.node(norm).inputs[0])
    kind = graph.type_of(unit)
    return isinstance(before, Tokens) and isinstance(kind, Tokens) and before.dim == kind.dim


def emit_norm(model: fx.GraphModule, graph: fx.Graph, env: dict, norm: str, value: fx.Node):
    """A copy of the final norm's fx node applied to ``value``."""
    lay = cached_layout(model)
    spec = graph_of(model)
    original = lay.fx_of[norm]
    data = lay.fx_of[spec.node(norm).inputs[0]]
    return graph.node_copy(original, lambda arg: value if arg is data else env[arg])


def has_prefix_tokens(model: fx.GraphModule, taken: Sequence[int]) -> bool:
    graph, units = graph_of(model), units_of(model)
    kinds = [graph.type_of(units[i]) for i in taken]
    return any(isinstance(kind, Tokens) and kind.prefix > 0 for kind in kinds)


def intermediates_graph(
    model: fx.GraphModule,
    taken: tuple[int, ...],
    norm: bool,
    fmt: str,
    only: bool,
    *,
    prefix: bool = False,
    stop: bool = False,
) -> fx.Graph:
    """The graph returning ``(features, intermediates[, prefixes])`` (``intermediates[,
    prefixes]`` when ``only``); ``prefix``: each intermediate's prefix tokens too;
    ``stop``: the features of a run stopped after the last unit taken (module docstring)."""
    spec = graph_of(model)
    lay = cached_layout(model)
    units = units_of(model)
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    graph.graph_copy(model.graph, env)
    norm_id = final_norm(model) if norm else None
    dynamic = input_grids(spec)
    image = (env[lay.fx_of[INPUT]], dynamic) if dynamic else None
    taps, prefixes = [], []
    for index in taken:
        unit = units[index]
        value = env[lay.fx_of[spec.resolve(unit)]]
        if norm_id is not None and norm_fits(spec, norm_id, unit):
            value = emit_norm(model, graph, env, norm_id, value)
        taps.append(_emit_format(graph, value, spec.type_of(unit), fmt, image))
        prefixes.append(_emit_prefix(graph, value, spec.type_of(unit)))
    extra = (prefixes,) if prefix else ()
    if only:  # a bare list: what a features_only model returns
        graph.output((taps, *extra) if prefix else taps)
    else:
        last = units[max(taken)] if stop else units[-1]
        features = _features_from(model, graph, env, last)
        graph.output((features, taps, *extra))
    _prune(graph)
    return graph


def _features_from(model: fx.GraphModule, graph: fx.Graph, env: dict, stop: str) -> Any:
    """``forward_features``' output (laid out) in ``graph``, computed from unit ``stop``'s
    output as timm computes it when a run stops there (module docstring)."""
    spec, lay, units = graph_of(model), cached_layout(model), units_of(model)
    last, kinds = units[-1], feature_types(model)
    values = [env[lay.fx_of[name]] for name in lay.features]
    if stop != last and spec.type_of(stop) == spec.type_of(last):
        env[lay.fx_of[spec.resolve(last)]].replace_all_uses_with(env[lay.fx_of[spec.resolve(stop)]])
    elif stop != last:
        feature = spec.resolve(lay.features[0]) if len(lay.features) == 1 else None
        end = spec.resolve(last)
        norm_after = (
            feature is not None
            and spec.node(feature).inputs == [end]
            and type(spec.node(feature).params).role == "norm"
        )
        if feature is None or not (feature == end or norm_after):
            raise ValueError(
                f"stop_early: the features are computed from {last} "
                f"{signature(spec.type_of(last))}, and what follows it does not take "
                f"{stop}'s {signature(spec.type_of(stop))}; pass intermediates_only=True "
                "or stop_early=False"
            )
        handed = _handed_on(model, stop)
        values, kinds = [env[lay.fx_of[handed]]], [spec.type_of(handed)]
    outs = []
    for value, kind, layout in zip(values, kinds, lay.formats, strict=True):
        if layout is not None and isinstance(kind, Tokens):
            value = emit_layout(graph, layout, value, kind, input_grids(spec))
        outs.append(value)
    return outs[0] if len(outs) == 1 else outs


def _handed_on(model: fx.GraphModule, stop: str) -> str:
    """The node holding what a stopped unit hands on: its output, or the map its one
    consumer re-lays it out as (an image of the same width on the same grid, no weights:
    Twins' next stage reads a map, and timm's stopped Twins returns that map)."""
    spec = graph_of(model)
    end, kind = spec.resolve(stop), spec.type_of(stop)
    users = [n.id for n in spec.nodes if end in n.inputs]
    if len(users) != 1 or not isinstance(kind, Tokens) or kind.prefix:
        return end
    after = spec.type_of(users[0])
    weights = any(True for _ in _module_params(model, users[0]))
    same = isinstance(after, Image) and after.shape == (kind.dim, *(_grid(kind) or ()))
    return users[0] if same and not weights else end


def _module_params(model: fx.GraphModule, node_id: str) -> Any:
    try:
        return model.get_submodule(node_id).parameters()
    except AttributeError:  # a function node: no module, no weights
        return iter(())


def forward_intermediates(
    model: fx.GraphModule,
    x: torch.Tensor,
    indices: int | Sequence[int] | None = None,
    norm: bool = False,
    stop_early: bool = False,
    output_fmt: str = "NCHW",
    intermediates_only: bool = False,
    return_prefix_tokens: bool = False,
    output_dict: bool = False,
) -> Any:
    """timm's ``forward_intermediates``: ``(forward_features(x), intermediates)``, or the
    intermediates alone, or timm's dict. ``indices``: an int takes the last n units, a
    sequence those (negative from the end), None every one. With ``intermediates_only``
    the run always stops after the last unit asked for (``stop_early`` changes nothing
    then); without it, ``stop_early`` gives the features of the stopped run as timm's
    families do (module docstring)."""
    if output_fmt not in OUTPUT_FORMATS:
        raise ValueError(
            f"output_fmt must be one of {', '.join(OUTPUT_FORMATS)}, got {output_fmt!r}"
        )
    units = units_or_refuse(model)
    taken, _ = take_indices(len(units), indices)
    only, stop = bool(intermediates_only), bool(stop_early) and not intermediates_only
    prefix = bool(return_prefix_tokens) and has_prefix_tokens(model, taken)
    checkpointing = bool(getattr(model, "grad_checkpointing", False))
    key = ("intermediates", tuple(taken), bool(norm), output_fmt, only, prefix, stop)
    entry = cache(model)
    plans = entry.setdefault("intermediate_plans", {})
    if (key, checkpointing) not in plans:
        graph = intermediates_graph(
            model, tuple(taken), bool(norm), output_fmt, only, prefix=prefix, stop=stop
        )
        plans[(key, checkpointing)] = _plan(graph, _unit_fn(model, checkpointing), "intermediates")
    out = plans[(key, checkpointing)].run(model, x)
    features: Any = None
    prefixes: Any = None
    if only and prefix:
        taps, prefixes = out
    elif only:
        taps = out
    elif prefix:
        features, taps, prefixes = out
    else:
        features, taps = out
    taps = list(taps)  # plain lists (fx hands back immutable ones), as timm's
    prefixes = None if prefixes is None else list(prefixes)
    if output_dict:
        result: dict[str, Any] = {"image_intermediates": taps}
        if prefixes is not None:
            result["image_intermediates_prefix"] = prefixes
        if not only:
            result["image_features"] = features
        return result
    if prefixes is not None:
        taps = list(zip(taps, prefixes, strict=True))
    return taps if only else (features, taps)
