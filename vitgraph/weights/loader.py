"""The one weights loader: every source of tensors goes through ``load_state``.

A source offers tensors under our keys (a reference's keys pass through its ``KeyMap``
first). Each model key is matched against the offer: a missing, unexpected, mis-shaped or
mis-typed key is reported (``LoadReport``); with ``adapt`` two mismatches are handled as
timm handles them when fine-tuning: a table of another resolution is resampled by its
block's ``resample`` hook, and a classifier for another class count is left freshly
initialised (with a warning). A load that must fit (``strict``) raises ``WeightsError``
listing every misfit before anything is copied; then tensors are copied one at a time, so
loading a safetensors file never holds a second copy of the weights.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import fx, nn

from vitgraph.model.layout import cached_layout, graph_of
from vitgraph.shapes import TensorType
from vitgraph.weights.format import check_format, describe, read_header, read_state
from vitgraph.weights.report import LoadReport, Shape

_FLOATS = {"F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"}


def _same(key: str) -> str:
    return key


def _unchanged(key: str, tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@dataclass(frozen=True)
class KeyMap:
    """How a reference's keys and tensors become ours (each interop converter has one)."""

    rename: Callable[[str], str] = _same
    convert: Callable[[str, torch.Tensor], torch.Tensor] = _unchanged


@dataclass
class Offer:
    """One tensor a source offers, under our key: its shape and dtype, read on demand."""

    shape: Shape
    floating: bool
    fetch: Callable[[], torch.Tensor]
    dtype: str = ""


@dataclass
class _Plan:
    report: LoadReport
    copies: dict[str, Callable[[], torch.Tensor]] = field(default_factory=dict)


def offers_from_state(
    state: dict[str, torch.Tensor], keymap: KeyMap | None = None
) -> dict[str, Offer]:
    """Offers of an in-memory state_dict (a reference model's, a ``.pth`` file's)."""
    keymap = keymap or KeyMap()
    offers: dict[str, Offer] = {}
    for key, tensor in state.items():
        converted = keymap.convert(key, tensor)
        offers[keymap.rename(key)] = Offer(
            tuple(converted.shape),
            converted.is_floating_point(),
            _constant(converted),
            _dtype_name(converted.dtype),
        )
    return offers


def owner(key: str, node_ids: set[str]) -> str | None:
    """The node a state_dict key belongs to (the longest node id that prefixes it)."""
    parts = key.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        if prefix in node_ids:
            return prefix
    return None


def load_state(
    model: nn.Module,
    offers: dict[str, Offer],
    *,
    fmt: str,
    source: str,
    what: str,
    strict: bool = True,
    adapt: bool = False,
    antialias: bool = True,
    source_types: dict[str, list[TensorType]] | None = None,
) -> LoadReport:
    """Load ``offers`` into ``model`` (see the module docstring); ``what`` begins the error
    of a strict load that does not fit (``"w.safetensors does not fit the model"``).
    ``source_types``: node id -> the input types the offered tables were made for, when
    known (a model being resized); a checkpoint's are read off its tables."""
    plan = _plan(model, offers, fmt, source, adapt, antialias, source_types or {})
    report = plan.report
    if report.reset:
        warnings.warn(
            f"the checkpoint's classifier does not fit this model's "
            f"{int(getattr(model, 'num_classes', 0))} classes: {', '.join(report.reset)} "
            "re-initialised",
            stacklevel=3,
        )
    if strict and not report.ok:
        raise report.error(what)
    target = model.state_dict()
    with torch.no_grad():
        for key, fetch in plan.copies.items():  # state_dict entries share the parameters'
            target[key].copy_(fetch())  # storage; one source tensor in memory at a time
    return report


def _plan(
    model: nn.Module,
    offers: dict[str, Offer],
    fmt: str,
    source: str,
    adapt: bool,
    antialias: bool,
    source_types: dict[str, list[TensorType]],
) -> _Plan:
    target = model.state_dict()
    report = LoadReport(
        fmt,
        source,
        total=len(target),
        shapes={k: tuple(v.shape) for k, v in target.items()},
        source_shapes={k: o.shape for k, o in offers.items()},
    )
    plan = _Plan(report)
    graph = graph_of(model) if adapt else None
    nodes = {n.id: n for n in graph.nodes} if graph is not None else {}
    heads = (
        set(cached_layout(model).classifiers)
        if isinstance(model, fx.GraphModule) and adapt
        else set()
    )
    order = [k for k in target if k in offers] + [k for k in offers if k not in target]
    for key in order:  # reported in the model's order, not the source's (safetensors sorts)
        offer = offers[key]
        if key not in target:
            report.unexpected.append(key)
            continue
        want = target[key]
        if offer.floating != want.is_floating_point():
            report.retyped.append((key, offer.dtype, _dtype_name(want.dtype)))
            continue
        fetch = offer.fetch
        if offer.shape != tuple(want.shape):
            node_id = owner(key, set(nodes))
            node = nodes.get(node_id) if node_id is not None else None
            resized = None
            if node is not None and graph is not None:
                resized = node.params.resample(
                    [graph.type_of(name) for name in node.inputs],
                    key[len(node.id) + 1 :],
                    offer.fetch(),
                    tuple(want.shape),
                    antialias=antialias,
                    was=source_types.get(node.id),
                )
            if resized is not None and tuple(resized.shape) == tuple(want.shape):
                fetch = _constant(resized)
                report.resampled.append(key)
            elif node_id in heads:
                report.reset.append(key)
                continue
            else:
                report.mismatched.append((key, offer.shape, tuple(want.shape)))
                continue
        plan.copies[key] = fetch
    done = set(plan.copies) | set(report.reset) | {k for k, _, _ in report.mismatched}
    done |= {k for k, _, _ in report.retyped}
    report.missing = [k for k in target if k not in done]
    report.loaded = list(plan.copies)
    return plan


def _constant(tensor: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: tensor


_DTYPE_NAMES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.bool: "BOOL",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.int16: "I16",
}


def _dtype_name(dtype: torch.dtype) -> str:
    return _DTYPE_NAMES.get(dtype, str(dtype))


@contextlib.contextmanager
def _file_offers(
    path: Path, keymap: KeyMap | None
) -> Iterator[tuple[dict[str, Offer], dict[str, str]]]:
    """(offers, metadata) of a weights file: a safetensors file offers each tensor lazily
    (read when copied); a ``.pth`` is read whole (``weights_only=True``)."""
    if path.suffix != ".safetensors":
        yield offers_from_state(read_state(path), keymap), {}
        return
    metadata, header = read_header(path)  # a broken file is refused before any tensor
    check_format(path, metadata)
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        if keymap is not None:  # a reference's keys: converted as they are read
            state = {key: handle.get_tensor(key) for key in header}
            yield offers_from_state(state, keymap), metadata
            return
        offers = {
            key: Offer(shape, dtype in _FLOATS, _reader(handle, key), dtype)
            for key, (dtype, shape) in header.items()
        }
        yield offers, metadata


def _reader(handle: Any, key: str) -> Callable[[], torch.Tensor]:
    return lambda: handle.get_tensor(key)


def load_weights(
    model: nn.Module,
    path: str | Path,
    *,
    keymap: KeyMap | None = None,
    strict: bool = True,
    adapt: bool = True,
    antialias: bool = True,
    spec: str = "",
) -> LoadReport:
    """Load a weights file into ``model`` and report every key that did not fit.

    vitgraph safetensors (``save_weights``) load as they are; any other file is read as a
    reference's checkpoint, whose keys go through ``keymap`` (the interop converter's)
    or, without one, unchanged (vitgraph names its nodes as timm does). ``adapt``:
    resample tables and reset a classifier of another class count, as timm does when
    fine-tuning (``build --weights`` passes False: every key and shape must fit).
    ``strict``: raise ``WeightsError`` if anything does not fit. ``spec``: the model's
    spec, named in the error."""
    path = Path(path)
    with _file_offers(path, keymap) as (offers, metadata):
        fmt = "vitgraph" if "vitgraph_format" in metadata else "timm"
        label = f" ({spec})" if spec else ""
        return load_state(
            model,
            offers,
            fmt=fmt,
            source=describe(metadata),
            what=f"{path} does not fit the model{label}",
            strict=strict,
            adapt=adapt,
            antialias=antialias,
        )


def carry_weights(model: nn.Module, old: nn.Module) -> LoadReport:
    """Copy from ``old`` (a build of an earlier version of the graph) every state_dict
    entry whose node (same id, same kind) and shape are unchanged; everything else keeps
    its fresh init (``report.reinitialized``)."""
    new_kinds = {n.id: n.kind for n in graph_of(model).nodes}
    old_kinds = {n.id: n.kind for n in graph_of(old).nodes}
    kept = {}
    for key, tensor in old.state_dict().items():
        node_id = owner(key, set(new_kinds))
        if (
            node_id is not None
            and owner(key, set(old_kinds)) == node_id
            and old_kinds[node_id] == new_kinds[node_id]
        ):
            kept[key] = tensor
    offers = offers_from_state(kept)
    return load_state(model, offers, fmt="carry", source="the earlier build", what="", strict=False)
