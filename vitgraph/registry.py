"""The block registry: every block kind, primitive (Python) or composite (YAML), and the
deprecated names that still resolve to one.

``@register`` adds a primitive kind (named by its ``kind`` literal); composites are added
by the catalog (``vitgraph.spec.catalog``) when it loads ``blocks/*.yaml``. Registering
the same kind twice is an error that names both places. The registry here is plain data:
``vitgraph.spec.catalog.registry()`` returns it with every shipped kind loaded.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from vitgraph.block import Block, FunctionOp, TensorOp

__all__ = ["Block", "Composite", "FunctionOp", "Registry", "TensorOp", "register"]


@dataclass(frozen=True)
class Composite:
    """A block kind written as a graph in YAML (``blocks/<name>.yaml``)."""

    kind: str
    doc: str
    params: type[BaseModel]  # validates the node's parameters
    graph: list[dict[str, Any]]
    outputs: dict[str, str]  # output name -> inner node id; the first is the main output
    file: str
    marks: Any = field(repr=False, compare=False, default=None)
    #: layout of ``forward_features`` when the features come out of this composite
    feature_layout: str | None = None
    #: names of its inputs, in order (``input0``, ``input1``, ... inside); a repeat whose
    #: every named input is also an output chains (repeat i takes repeat i - 1's outputs)
    inputs: tuple[str, ...] = ()

    @property
    def output(self) -> str | None:
        """The inner node that is the main output (None: the last entry)."""
        return next(iter(self.outputs.values()), None)

    @property
    def chains(self) -> bool:
        """Whether a repeat of it feeds each repeat's outputs into the next one's inputs
        (every named input is also an output)."""
        return bool(self.inputs) and all(name in self.outputs for name in self.inputs)


@dataclass(frozen=True)
class Alias:
    """A deprecated kind name: specs using it still load, with a warning naming ``kind``."""

    kind: str  # the kind that replaces it
    note: str  # what changed, for the warning
    #: old params -> the new kind's params (None: the same names)
    translate: Callable[[dict[str, Any]], dict[str, Any]] | None = None


class Registry:
    def __init__(self) -> None:
        self.primitives: dict[str, type[Block]] = {}
        self.composites: dict[str, Composite] = {}
        self.aliases: dict[str, Alias] = {}
        self._origins: dict[str, str] = {}

    def kinds(self) -> list[str]:
        """Every current kind (deprecated aliases left out)."""
        return sorted({*self.primitives, *self.composites})

    def add_primitive(self, cls: type[Block]) -> None:
        kind = kind_of(cls)
        self._claim(kind, f"{cls.__module__}.{cls.__qualname__}")
        self.primitives[kind] = cls

    def add_composite(self, composite: Composite) -> None:
        self._claim(composite.kind, composite.file)
        self.composites[composite.kind] = composite

    def add_alias(self, old: str, alias: Alias, origin: str) -> None:
        self._claim(old, origin)
        self.aliases[old] = alias

    def _claim(self, kind: str, origin: str) -> None:
        if kind in self._origins:
            raise RuntimeError(
                f"block kind '{kind}' is registered twice: by {self._origins[kind]} and by {origin}"
            )
        self._origins[kind] = origin

    def origin(self, kind: str) -> str:
        return self._origins[kind]

    def fields(self, kind: str) -> set[str] | None:
        """The params a kind takes (None: no such kind)."""
        if kind in self.aliases:
            kind = self.aliases[kind].kind
        if kind in self.primitives:
            return set(self.primitives[kind].model_fields) - {"kind"}
        if kind in self.composites:
            return set(self.composites[kind].params.model_fields) - {"kind"}
        return None


REGISTRY = Registry()


def register(cls: type[Block]) -> type[Block]:
    """Class decorator: register a primitive block kind (named by its ``kind`` literal)."""
    REGISTRY.add_primitive(cls)
    return cls


def deprecated_alias(
    old: str,
    new: str,
    note: str = "",
    translate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Keep the kind name ``old`` loading as ``new`` (with a deprecation warning)."""
    import inspect

    frame = inspect.stack()[1]
    REGISTRY.add_alias(old, Alias(new, note, translate), f"{frame.filename}:{frame.lineno}")


def kind_of(cls: type[Block]) -> str:
    annotation = cls.model_fields["kind"].annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is not typing.Literal or len(args) != 1:
        raise TypeError(f"{cls.__qualname__}.kind must be a Literal with one value")
    return str(args[0])
