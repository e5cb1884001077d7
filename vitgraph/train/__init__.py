"""Training vitgraph models: data, objectives, the loop, checkpoints and DDP.

``vitgraph.train(spec, ...)`` (this package is callable) and ``vitgraph train SPEC``
train a spec on an image folder or scikit-learn's digits; see :mod:`vitgraph.train.loop`.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def train(
    spec: str | None = None,
    variant: str | None = None,
    overrides: dict[str, Any] | None = None,
    **settings: Any,
):
    """Train a spec; ``settings`` are :class:`vitgraph.train.config.TrainConfig` fields.
    Returns a :class:`vitgraph.train.loop.TrainResult` (model, history, checkpoint)."""
    from vitgraph.train.loop import train as run

    return run(spec, variant, overrides, **settings)


class _CallableModule(types.ModuleType):
    """Lets ``vitgraph.train(...)`` call :func:`train` although ``vitgraph.train`` is
    this package."""

    def __call__(self, *args: Any, **kwargs: Any):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["train"]
