"""``vitgraph predict``: run a model on one image and show what it predicts, one renderer
per task as a one-file plugin (``@renderer("name")``): ``classification`` prints the top
five classes, ``detection`` draws the boxes and labels on the image (PNG). The renderer
is the one named after the training objective the spec's blocks ask for, else
``classification``; a new task (restoration, generation) adds a file here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vitgraph.ir import Validated

#: what a renderer is given: the graph, the built model (eval), the image (1, C, H, W)
#: normalised for the model, its valid-pixel mask (1, H, W) or None, the image as uint8
#: (C, h, w) before padding, and the command's arguments
Renderer = Callable[["Prediction"], int]
_RENDERERS: dict[str, Renderer] = {}


@dataclass
class Prediction:
    graph: Validated
    model: Any
    image: Any
    mask: Any
    original: Any
    args: Any


def renderer(name: str) -> Callable[[Renderer], Renderer]:
    """Register the renderer of a task (named as its training objective)."""

    def declare(fn: Renderer) -> Renderer:
        if name in _RENDERERS:
            raise RuntimeError(f"renderer '{name}' is registered twice")
        _RENDERERS[name] = fn
        return fn

    return declare


def renderers() -> dict[str, Renderer]:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        importlib.import_module(f"{__name__}.{info.name}")
    return dict(_RENDERERS)


def renderer_for(graph: Validated) -> Renderer:
    """The renderer of the spec's task (its blocks' objective, else classification)."""
    from vitgraph.train.objectives import objectives_of

    known = renderers()
    for name in sorted(objectives_of(graph)):
        if name in known:
            return known[name]
    return known["classification"]
