"""The block registry: every block kind, primitive (Python) or composite (YAML).

A primitive kind is a frozen pydantic params model whose ``kind`` literal names it, with
a shape rule (``infer``) and a builder (``build``). A composite kind is a small graph in a
YAML file under ``blocks/`` with declared parameters. Registering the same kind twice is
an error that names both places.
"""

from __future__ import annotations

import importlib
import pkgutil
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, create_model

from vitgraph.shapes import TensorType


class Block(BaseModel):
    """Base of every primitive block's params model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    #: number of inputs the block takes (None: one or more)
    arity: ClassVar[int | None] = 1
    #: fields that name another block kind (so graph edits can swap them)
    family: ClassVar[str] = "misc"
    #: init scheme of the module ``build`` returns (a name in ``vitgraph.init.SCHEMES``;
    #: None: ``vitgraph.init.KIND_SCHEMES`` or keep what ``build`` drew)
    weight_init: ClassVar[str | None] = None

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        """Fill omitted dims from the inputs and return (resolved params, output type).

        Raises ``ShapeError`` with the numbers when the inputs do not fit.
        """
        raise NotImplementedError

    def build(self, *inputs: TensorType) -> Any:
        """Return an ``nn.Module``, a ``TensorOp`` or a plain function of the inputs.

        Called with the resolved params and the inferred input types.
        """
        raise NotImplementedError


@dataclass
class TensorOp:
    """A block realised as ``fn(*inputs, tensor)`` with ``tensor`` stored at the node's own
    path (``cls_token``, ``pos_embed``), so state_dict keys read like the spec."""

    tensor: Any  # nn.Parameter or a buffer tensor
    fn: Callable[..., Any]
    persistent: bool = True
    kwargs: dict[str, Any] = field(default_factory=dict)  # constants passed to ``fn``


@dataclass
class FunctionOp:
    """A parameter-free block realised as ``fn(*inputs, **kwargs)`` (a ``call_function``)."""

    fn: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Composite:
    """A block kind written as a graph in YAML (``blocks/<name>.yaml``)."""

    kind: str
    doc: str
    params: type[BaseModel]  # validates the node's parameters
    graph: list[dict[str, Any]]
    outputs: str | None
    file: str
    marks: Any = field(repr=False, compare=False, default=None)


class Registry:
    def __init__(self) -> None:
        self.primitives: dict[str, type[Block]] = {}
        self.composites: dict[str, Composite] = {}
        self._origins: dict[str, str] = {}

    def kinds(self) -> list[str]:
        return sorted({*self.primitives, *self.composites})

    def add_primitive(self, cls: type[Block]) -> None:
        kind = _kind_of(cls)
        self._claim(kind, f"{cls.__module__}.{cls.__qualname__}")
        self.primitives[kind] = cls

    def add_composite(self, composite: Composite) -> None:
        self._claim(composite.kind, composite.file)
        self.composites[composite.kind] = composite

    def _claim(self, kind: str, origin: str) -> None:
        if kind in self._origins:
            raise RuntimeError(
                f"block kind '{kind}' is registered twice: by {self._origins[kind]} and by {origin}"
            )
        self._origins[kind] = origin

    def origin(self, kind: str) -> str:
        return self._origins[kind]


_REGISTRY = Registry()
_loaded = False


def register(cls: type[Block]) -> type[Block]:
    """Class decorator: register a primitive block kind (named by its ``kind`` literal)."""
    _REGISTRY.add_primitive(cls)
    return cls


def registry() -> Registry:
    """The registry with every shipped block kind loaded."""
    global _loaded
    if not _loaded:
        _loaded = True
        package = importlib.import_module("vitgraph.blocks")
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            importlib.import_module(f"vitgraph.blocks.{info.name}")
        for entry in sorted(resources.files("vitgraph.blocks").iterdir(), key=lambda p: p.name):
            if entry.name.endswith(".yaml"):
                _REGISTRY.add_composite(load_composite(entry.read_text(), str(entry)))
        from vitgraph.plugins import load_entry_points

        load_entry_points()  # installed third-party kinds (group vitgraph.blocks)
    return _REGISTRY


def load_plugin(module: str) -> None:
    """Import a third-party module that registers block kinds (named explicitly by the user)."""
    registry()
    importlib.import_module(module)


def _kind_of(cls: type[Block]) -> str:
    annotation = cls.model_fields["kind"].annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is not typing.Literal or len(args) != 1:
        raise TypeError(f"{cls.__qualname__}.kind must be a Literal with one value")
    return str(args[0])


_PY_TYPES = {bool: bool, int: int, float: float, str: str}


def load_composite(text: str, file: str) -> Composite:
    """Read a composite block definition (validated like a spec, errors located)."""
    from vitgraph.errors import SpecError
    from vitgraph.yamlmarks import parse_yaml

    data, marks = parse_yaml(text, file)
    known = {"vitgraph", "composite", "doc", "params", "required", "graph", "output"}
    unknown = set(data) - known if isinstance(data, dict) else set()
    if not isinstance(data, dict) or unknown or "composite" not in data or "graph" not in data:
        raise SpecError.at(
            marks.at(()),
            "",
            "a composite block file needs 'composite', 'params' "
            f"and 'graph' (unknown keys: {sorted(unknown)})",
        )
    kind = str(data["composite"])
    fields: dict[str, Any] = {"kind": (typing.Literal[kind], kind)}  # type: ignore[valid-type]
    for name in data.get("required", []):
        fields[name] = (Any, ...)
    for name, default in (data.get("params") or {}).items():
        py = _PY_TYPES.get(type(default))
        annotation: Any = Any if py is None else (py | None if py is not float else float | None)
        if py is float:
            annotation = float | int | None
        fields[name] = (annotation, default)
    params = create_model(  # type: ignore[call-overload]
        f"{kind.title().replace('_', '')}Params",
        __config__=ConfigDict(frozen=True, extra="forbid"),
        __doc__=data.get("doc", ""),
        **fields,
    )
    return Composite(
        kind, str(data.get("doc", "")), params, list(data["graph"]), data.get("output"), file, marks
    )
