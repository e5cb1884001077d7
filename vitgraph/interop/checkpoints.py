"""``vitgraph.load_weights``: a weights file into a compiled model, a reference's
checkpoint included (its keys mapped by the same converter as ``from_timm``)."""

from __future__ import annotations

from pathlib import Path

from vitgraph.interop.timm import Reference, timm_keymap
from vitgraph.weights import LoadReport
from vitgraph.weights import load_weights as load_file


def load_weights(
    model: Reference,
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
    as timm does). A position or relative-position table of another resolution is
    resampled and a classifier for another class count is left freshly initialised (with
    a warning), as timm does. ``strict``: raise ``WeightsError`` if keys are missing,
    unexpected or mis-shaped after that."""
    keymap = timm_keymap(timm_name) if timm_name is not None else None
    return load_file(model, path, keymap=keymap, strict=strict, antialias=antialias)
