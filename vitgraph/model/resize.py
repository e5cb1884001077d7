"""timm's ``set_input_size`` on a compiled model: rebuilt in place at another input size.

A vitgraph model is its validated spec compiled for one size, so a new size is a new
spec: the size override (the spec's ``image_size`` arg, else ``input.size``) and, for
windowed attention, each stage's window scaled with the patch grid as timm's Swin does
(``calc_stage_window_sizes``: ``w * new_grid // reference_grid``). The spec is
re-validated (a size the patch or a window does not divide is a located ``SpecError``),
rebuilt on the model's device and dtype, and the weights carried over through the one
loader (``vitgraph.weights.load_state`` with ``adapt``): each table that changed shape is
resized by its block's ``resample`` hook, told the grid the table was made for, as timm
resizes it (``resample_abs_pos_embed``, ``resize_rel_pos_bias_table``). The module then
takes the rebuilt one's state, so references to it stay valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from torch import fx, nn

from vitgraph.errors import SpecError
from vitgraph.ir import Validated
from vitgraph.model.layout import graph_of
from vitgraph.shapes import Image, Tokens
from vitgraph.weights.loader import load_state, offers_from_state


class _Rebuildable(Protocol):
    """What a model's spec snapshot offers to rebuild it (``vitgraph.Graph``)."""

    source: Any
    variant: str | None
    overrides: dict[str, Any]

    @classmethod
    def from_source(
        cls, source: Any, variant: str | None = None, overrides: dict[str, Any] | None = None
    ) -> Any: ...

    def build(self, device: Any = None, dtype: Any = None) -> fx.GraphModule: ...


def size_key(graph: Validated) -> str:
    """The override that sets the input size: the spec's size arg, else ``input.size``
    (the route ``create_model(img_size=...)`` takes)."""
    return next((k for k in ("image_size", "img_size") if k in graph.args), "input.size")


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"set_input_size({what}={value!r}): give an int or (height, width) > 0")
    return pair[0], pair[1]


def patch_grid(graph: Validated) -> tuple[int, int] | None:
    """The first token grid the graph makes from its image (the patch grid)."""
    for node in graph.nodes:
        out = graph.type_of(node.id)
        if isinstance(out, Tokens) and out.grid is not None:
            return out.grid
    return None


def _windowed_entries(graph: Validated) -> dict[str, list[int]]:
    """Top-level spec entries that set a ``window`` (Swin's stages), with the windows
    their primitive nodes were expanded to."""
    entries = [
        e
        for e in graph.source.document.graph
        if isinstance(e, dict)
        and ("window" in e or any("window" in (v or {}) for v in (e.get("at") or {}).values()))
    ]
    found: dict[str, list[int]] = {}
    for entry in entries:
        prefix = f"{entry['id']}."
        found[entry["id"]] = [
            int(node.params.window)  # type: ignore[attr-defined]
            for node in graph.nodes
            if node.id.startswith(prefix) and "window" in type(node.params).model_fields
        ]
    return found


def _window_overrides(
    graph: Validated,
    new_grid: tuple[int, int],
    reference: tuple[dict[str, int], tuple[int, int]],
    window_size: int | Sequence[int] | None,
    window_ratio: int | None,
) -> dict[str, int]:
    entries = _windowed_entries(graph)
    name = graph.variant or graph.name
    if not entries:
        if window_size is not None or window_ratio is not None:
            raise ValueError(f"set_input_size(): {name} has no windowed attention to resize")
        return {}
    windows, ref_grid = reference
    out: dict[str, int] = {}
    for entry, expanded in entries.items():
        if window_size is None and window_ratio is None and len(set(expanded)) > 1:
            raise ValueError(
                f"set_input_size(): {name}'s {entry} has windows {sorted(set(expanded))} "
                "in its repeats; one window per entry is resized (give window_size=N)"
            )
        if window_size is not None:
            pair = _pair(window_size, "window_size")
        elif window_ratio is not None:
            pair = (max(1, new_grid[0] // window_ratio), max(1, new_grid[1] // window_ratio))
        else:  # timm's default: each window keeps its ratio to the patch grid
            w = windows[entry]
            pair = (max(1, w * new_grid[0] // ref_grid[0]), max(1, w * new_grid[1] // ref_grid[1]))
        if pair[0] != pair[1]:
            raise ValueError(
                f"set_input_size(): {name}'s {entry} would need a {pair[0]}x{pair[1]} window; "
                "only square windows are built (give window_size=N)"
            )
        out[f"{entry}.window"] = pair[0]
    return out


def rebuild(
    model: fx.GraphModule,
    img_size: int | Sequence[int] | None = None,
    patch_size: int | Sequence[int] | None = None,
    window_size: int | Sequence[int] | None = None,
    window_ratio: int | None = None,
    always_partition: bool | None = None,
) -> fx.GraphModule:
    """``model``'s spec rebuilt for ``img_size`` (see the module docstring), with timm's
    arguments, on its device and dtype and freshly initialised; what vitgraph cannot do
    is refused by name, before anything changes."""
    graph = graph_of(model)
    name = graph.variant or graph.name
    if not hasattr(graph, "build"):
        raise TypeError("set_input_size(): this model's spec snapshot cannot be rebuilt")
    rebuildable: _Rebuildable = graph  # type: ignore[assignment]
    if not isinstance(graph.input_type, Image):
        raise ValueError(f"set_input_size(): {name} does not take an image")
    if model.__dict__.get("vitgraph_cut"):
        raise NotImplementedError(
            f"set_input_size(): {name} was cut (reset_classifier(0, '') or "
            "prune_intermediate_layers); resize the whole model first, then cut it"
        )
    if always_partition:
        raise ValueError(
            "set_input_size(always_partition=True): windows larger than the grid are not "
            "built (vitgraph clamps a window to the grid, timm's default)"
        )
    old_grid = patch_grid(graph)
    size = _pair(img_size, "img_size") if img_size is not None else graph.input_shape[1:]
    if patch_size is not None and old_grid is not None:
        stride = (graph.input_shape[1] // old_grid[0], graph.input_shape[2] // old_grid[1])
        if _pair(patch_size, "patch_size") != stride:
            raise ValueError(
                f"set_input_size(patch_size={patch_size!r}): {name} has {stride[0]}x{stride[1]} "
                "patches; a resampled patch kernel (FlexiViT's resample_patch_embed) is not "
                "built"
            )
    overrides = {**graph.overrides, size_key(graph): list(size)}
    if old_grid is not None:
        stride = (graph.input_shape[1] // old_grid[0], graph.input_shape[2] // old_grid[1])
        new_grid = (size[0] // stride[0], size[1] // stride[1])
        reference = model.__dict__.get("vitgraph_ref_windows")
        if reference is None:
            reference = ({e: max(w) for e, w in _windowed_entries(graph).items()}, old_grid)
        overrides.update(_window_overrides(graph, new_grid, reference, window_size, window_ratio))
        if window_size is not None or window_ratio is not None:  # timm's new reference
            reference = ({k.rsplit(".", 1)[0]: v for k, v in overrides.items()}, new_grid)
    elif window_size is not None or window_ratio is not None:
        raise ValueError(f"set_input_size(): {name} has no windowed attention to resize")
    try:
        resized = rebuildable.from_source(rebuildable.source, rebuildable.variant, overrides)
    except SpecError as error:
        raise SpecError(error.problems) from None  # located at the spec's own lines
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else None
    dtype = param.dtype if param is not None else None
    new = resized.build(device=device, dtype=dtype)
    if old_grid is not None:
        new.__dict__["vitgraph_ref_windows"] = reference
    return new


def carry(old: nn.Module, new: fx.GraphModule) -> None:
    """Every weight of ``old`` into ``new``, the tables resized (strict: all must fit)."""
    old_graph = graph_of(old)
    name = old_graph.variant or old_graph.name
    state = old.state_dict()
    load_state(
        new,
        offers_from_state(state),
        fmt="vitgraph",
        source=f"{name} at {old_graph.input_shape[1]}x{old_graph.input_shape[2]}",
        what=f"set_input_size(): the weights of {name} do not fit the resized model",
        adapt=True,
        source_types={n.id: [old_graph.type_of(i) for i in n.inputs] for n in old_graph.nodes},
    )
    grads = dict(old.named_parameters())
    for key, param in new.named_parameters():
        if key in grads:
            param.requires_grad_(grads[key].requires_grad)


def adopt(model: nn.Module, new: nn.Module) -> None:
    """Make ``model`` the rebuilt ``new`` (same object): its modules, graph, code and
    mode (the model API re-applies what it keeps beside them: checkpointing)."""
    training = model.training
    model.__class__ = new.__class__
    model.__dict__.clear()
    model.__dict__.update(new.__dict__)
    model.train(training)
