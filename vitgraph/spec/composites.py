"""Composite block files (``blocks/<kind>.yaml``): a small graph with declared params,
inputs and outputs.

A composite file is read like a spec (safe YAML, marks kept) into a ``Composite``. Its
params become a frozen pydantic model, so a node using the composite is validated like
a primitive one, and the JSON Schema (``vitgraph schema``) shows each param's type and
doc. A param is declared either typed and documented, or by its default alone::

    params:
      heads: {type: pos_int, doc: Attention heads.}          # no default: required
      mlp_ratio: {type: pos_float, default: 4.0, doc: MLP width over the token width.}
      drop_path: {type: drop_path_rate, default: 0.0, doc: Stochastic depth.}
      norm_eps: 1.0e-6                                       # the shorthand
    required: [heads]                                        # (for shorthand params)

A declaration is a mapping with ``type`` and/or ``doc`` (and ``default``). The types are
the shared vocabulary (``TYPES``: ``int``, ``float``, ``bool``, ``str``, ``pos_int``,
``pos_float``, ``rate``, ``drop_rate``, ``drop_path_rate``, ``activation``, ``kind``,
``any``, and ``list[<type>]``); the doc is the param's description in the JSON Schema
and the hint of a problem with its value. The shorthand types a param by its default (an
int default takes ints, a float default numbers; ``null`` or a ``required:`` name takes
anything). Every param may also be null, which the composite's inner entries read as
"leave this param out" (the inner kind's own default), as they always have. A
``drop_path_rate`` param is a stochastic-depth rate: a spec entry that sets one keeps
its own rates under the spec's ``stochastic_depth:`` schedule.

Inputs and outputs. Inside the graph the inputs are ``input`` (= ``input0``),
``input1``, ...; ``inputs: [small, large]`` names them (for the docs and for chaining).
The main output is the last entry, or ``output: <inner id>``; ``outputs:`` declares
several, the first being the main one: a list of inner ids (``outputs: [large, small]``)
or a mapping of names to inner ids (``outputs: {tokens: residual2, map: map}``). A spec
reads a named output as ``<instance>.<name>`` (``blocks.3.small``) or, for a repeat
group, ``<group>.<name>`` (``blocks.small``: the last repeat's). A repeated composite
whose every named input is also an output chains: repeat i > 0 takes repeat i - 1's
outputs of the same names (``vitgraph.spec.expand``).
"""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any

from pydantic import ConfigDict, Field, create_model

from vitgraph.errors import Location, SpecError
from vitgraph.registry import Composite
from vitgraph.spec.parse import Marks, parse_yaml
from vitgraph.suggest import did_you_mean
from vitgraph.vocabulary import (
    Activation,
    DropPathRate,
    DropRate,
    PosInt,
    Rate,
    StochasticDepth,
    TrainingOnly,
)

_PY_TYPES = {bool: bool, int: int, float: float, str: str}
_KEYS = {
    "vitgraph",
    "composite",
    "doc",
    "inputs",
    "params",
    "required",
    "graph",
    "output",
    "outputs",
    "feature_layout",
}
#: the keys of a typed param declaration
_DECLARATION = ("type", "default", "doc")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: the param types a composite may declare (the shared vocabulary of the block kinds)
TYPES: dict[str, Any] = {
    "any": Any,
    "bool": bool,
    "int": int,
    "float": float,
    "str": str,
    "pos_int": PosInt,
    "pos_float": Annotated[float, Field(gt=0)],
    "rate": Rate,
    "drop_rate": DropRate,
    "drop_path_rate": DropPathRate,
    "activation": Activation,
    "kind": str,  # a block kind's name (checked where an inner entry uses it)
}


def load_composite(text: str, file: str) -> Composite:
    """Read a composite block definition (validated like a spec, errors located)."""
    data, marks = parse_yaml(text, file)
    unknown = set(data) - _KEYS if isinstance(data, dict) else set()
    if not isinstance(data, dict) or unknown or "composite" not in data or "graph" not in data:
        raise SpecError.at(
            marks.at(()),
            "",
            "a composite block file needs 'composite', 'params' "
            f"and 'graph' (unknown keys: {sorted(unknown)})",
        )
    kind = str(data["composite"])
    graph = data["graph"]
    if not isinstance(graph, list):
        raise SpecError.at(marks.at(("graph",)), "graph", "graph must be a list of entries")
    fields: dict[str, Any] = {"kind": (typing.Literal[kind], kind)}
    required = data.get("required") or []
    if not isinstance(required, list):
        raise SpecError.at(marks.at(("required",)), "required", "required lists param names")
    for name in required:
        fields[str(name)] = (Any, ...)
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise SpecError.at(marks.at(("params",)), "params", "params maps names to declarations")
    for name, value in params.items():
        fields[str(name)] = _field(str(name), value, marks)
    model = create_model(
        f"{kind.title().replace('_', '')}Params",
        __config__=ConfigDict(frozen=True, extra="forbid"),
        __doc__=data.get("doc", ""),
        **fields,
    )
    ids = [str(e.get("id")) for e in graph if isinstance(e, dict)]
    outputs = _outputs(data, ids, marks)
    inputs = _inputs(data, marks)
    layout = data.get("feature_layout")
    return Composite(
        kind,
        str(data.get("doc", "")),
        model,
        list(graph),
        outputs,
        file,
        marks,
        None if layout is None else str(layout),
        inputs=inputs,
    )


def _field(name: str, value: Any, marks: Marks) -> tuple[Any, Any]:
    """A param's (annotation, default or FieldInfo): a declaration or a bare default."""
    where = ("params", name)
    if not _NAME.fullmatch(name):
        raise SpecError.at(marks.at(where, key=True), f"params.{name}", "a param is a name")
    if isinstance(value, dict) and ("type" in value or "doc" in value):
        extra = [k for k in value if k not in _DECLARATION]
        if extra:
            raise SpecError.at(
                marks.at((*where, extra[0]), key=True),
                f"params.{name}",
                f"unknown key '{extra[0]}' in a param declaration"
                f"{did_you_mean(str(extra[0]), _DECLARATION)}",
                "a param declares type, default and doc",
            )
        annotation = _annotation(value.get("type", "any"), marks.at((*where, "type")), name)
        doc = value.get("doc")
        if doc is not None and not isinstance(doc, str):
            raise SpecError.at(marks.at((*where, "doc")), f"params.{name}", "doc is a sentence")
        default = value["default"] if "default" in value else ...
        return annotation, Field(default, description=doc)
    py = _PY_TYPES.get(type(value))
    shorthand: Any = Any if py is None else (py | None if py is not float else float | None)
    if py is float:
        shorthand = float | int | None
    return shorthand, value


def _annotation(written: Any, where: Location, name: str) -> Any:
    """The annotation of a declared type: ``T | None`` (null: the inner kinds' default),
    with the type's field markers (training-only, stochastic depth) kept on the outside,
    where core reads them."""
    text = str(written).strip()
    listed = text.startswith("list[") and text.endswith("]")
    inner = text[len("list[") : -1].strip() if listed else None
    base = TYPES.get(inner if inner is not None else text)
    if base is None or not isinstance(written, str):
        raise SpecError.at(
            where,
            f"params.{name}.type",
            f"unknown param type {written!r}{did_you_mean(text, TYPES)}",
            f"types: {', '.join(TYPES)}, or list[<type>]",
        )
    if inner is not None:
        return list[base] | None  # type: ignore[valid-type]
    markers = [
        m
        for m in getattr(base, "__metadata__", ())
        if isinstance(m, TrainingOnly | StochasticDepth)
    ]
    return Annotated[(base | None, *markers)] if markers else base | None


def _outputs(data: dict[str, Any], ids: list[str], marks: Marks) -> dict[str, str]:
    """Output name -> inner id, the main output first (``output:`` or ``outputs:``)."""
    if "output" in data and "outputs" in data:
        raise SpecError.at(
            marks.at(("outputs",), key=True),
            "outputs",
            "a composite declares 'output' or 'outputs', not both",
            "list the main output first under outputs:",
        )
    if "output" in data:
        raw: Any = [data["output"]]
        key = "output"
    else:
        raw = data.get("outputs")
        key = "outputs"
        if raw is None:
            return {}
    if isinstance(raw, list):
        paths = [(key, n) if key == "outputs" else (key,) for n in range(len(raw))]
        pairs = [(str(v), str(v), p) for v, p in zip(raw, paths, strict=True)]
    elif isinstance(raw, dict):
        pairs = [(str(k), str(v), (key, k)) for k, v in raw.items()]
    else:
        raise SpecError.at(
            marks.at((key,)), key, "outputs lists inner ids or maps output names to them"
        )
    if not pairs:
        raise SpecError.at(marks.at((key,)), key, "outputs names at least one inner id")
    outputs: dict[str, str] = {}
    for name, target, path in pairs:
        if not _NAME.fullmatch(name):
            raise SpecError.at(
                marks.at(path, key=isinstance(raw, dict)),
                key,
                f"output name {name!r} must be a name (letters, digits, '_'; not a number)",
            )
        if target not in ids:
            raise SpecError.at(
                marks.at(path),
                key,
                f"output '{target}' is not an entry of the graph{did_you_mean(target, ids)}",
            )
        if name in ids and name != target:
            raise SpecError.at(
                marks.at(path, key=True),
                key,
                f"output name '{name}' is also an inner entry's id: it must name that entry",
            )
        outputs[name] = target
    return outputs


def _inputs(data: dict[str, Any], marks: Marks) -> tuple[str, ...]:
    raw = data.get("inputs")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(n, str) and _NAME.fullmatch(n) for n in raw):
        raise SpecError.at(
            marks.at(("inputs",)), "inputs", "inputs names the composite's inputs, in order"
        )
    if len(set(raw)) != len(raw):
        raise SpecError.at(marks.at(("inputs",)), "inputs", "an input name is used twice")
    return tuple(raw)
