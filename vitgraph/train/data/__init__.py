"""Training data sources, one file each (``@data_source``): ``digits``, image folders;
``load_data`` picks the source a ``--data`` value names (see ``base.py``)."""

from __future__ import annotations

import importlib
import pkgutil

from vitgraph.suggest import did_you_mean
from vitgraph.train.data.base import (
    SOURCES,
    DataError,
    DataRequest,
    Dataset,
    Split,
    data_source,
    normalize,
)
from vitgraph.train.data.digits import load_digits
from vitgraph.train.data.folder import load_folder

__all__ = [
    "DataError",
    "DataRequest",
    "Dataset",
    "Split",
    "data_source",
    "load_data",
    "load_digits",
    "load_folder",
    "normalize",
]


def _load_sources() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        importlib.import_module(f"{__name__}.{info.name}")


def load_data(
    data: str,
    shape: tuple[int, ...],
    *,
    patch: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    vocab: int | None = None,
) -> Dataset:
    """The data set ``data`` names: a registered source (``digits``), or a path the first
    source that accepts it reads (an image folder)."""
    _load_sources()
    request = DataRequest(shape, patch, val_fraction, seed, vocab)
    if data in SOURCES and SOURCES[data].accepts is None:
        return SOURCES[data].load(data, request)
    # any folder is an image-class folder: the sources that ask for more go first
    for source in sorted(SOURCES.values(), key=lambda s: s.name == "folder"):
        if source.accepts is not None and source.accepts(data):
            return source.load(data, request)
    names = [name for name, s in SOURCES.items() if s.accepts is None]
    maybe = did_you_mean(data, names)
    if maybe:
        raise DataError(
            f"no data set '{data}'{maybe}: name a source ({', '.join(sorted(names))}) or a "
            "folder with one sub-folder of images per class"
        )
    return load_folder(data, shape, patch=patch, val_fraction=val_fraction, seed=seed)
