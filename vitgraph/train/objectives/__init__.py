"""Training objectives as one-file plugins: the loss of a batch and the held-out metric.

Each file of this package registers one objective with ``@objective("name")``. The
objective a run uses is the one the spec's blocks ask for (``Block.objective``: a
distillation head asks for ``distillation``), else the config's ``objective``, else
``classification``. A new task (detection, generation, restoration) adds a file here and
a data source in ``vitgraph.train.data``; the loop does not change.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from vitgraph.ir import Validated
from vitgraph.suggest import did_you_mean
from vitgraph.train.objectives.base import Objective

_OBJECTIVES: dict[str, type[Objective]] = {}
_loaded = False


def objective(name: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: register a training objective under ``name``."""

    def declare(cls: type[Objective]) -> type[Objective]:
        if name in _OBJECTIVES:
            raise RuntimeError(
                f"objective '{name}' is registered twice: by {_OBJECTIVES[name].__module__} "
                f"and by {cls.__module__}"
            )
        cls.name = name
        _OBJECTIVES[name] = cls
        return cls

    return declare


def objectives() -> dict[str, type[Objective]]:
    """Every registered objective (this package's files imported on first use)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
            if info.name != "base":
                importlib.import_module(f"{__name__}.{info.name}")
    return dict(_OBJECTIVES)


def objectives_of(graph: Validated) -> set[str]:
    """The training objectives the spec's blocks ask for (``Block.objective``)."""
    return {o for node in graph.nodes if (o := type(node.params).objective) is not None}


def choose(graph: Validated, requested: str | None = None) -> type[Objective]:
    """The objective for a spec: what its blocks ask for, else ``requested``, else
    classification. Blocks asking for two different objectives are an error."""
    known = objectives()
    wanted = objectives_of(graph)
    if len(wanted) > 1:
        raise ValueError(
            f"{graph.name}'s blocks ask for more than one training objective: "
            f"{', '.join(sorted(wanted))}"
        )
    name = next(iter(wanted), None) or requested or "classification"
    if name not in known:
        raise ValueError(
            f"no training objective named '{name}'{did_you_mean(name, known)}; "
            f"registered: {', '.join(sorted(known))}"
        )
    return known[name]


__all__: list[Any] = ["Objective", "choose", "objective", "objectives", "objectives_of"]
