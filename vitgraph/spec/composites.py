"""Composite block files (``blocks/<kind>.yaml``): a small graph with declared params.

A composite file is read like a spec (safe YAML, marks kept) into a ``Composite``: its
params become a frozen pydantic model (the type of each default, ``required:`` params of
any type), so a node using the composite is validated like a primitive one.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import ConfigDict, create_model

from vitgraph.errors import SpecError
from vitgraph.registry import Composite
from vitgraph.spec.parse import parse_yaml

_PY_TYPES = {bool: bool, int: int, float: float, str: str}
_KEYS = {
    "vitgraph",
    "composite",
    "doc",
    "params",
    "required",
    "graph",
    "output",
    "feature_layout",
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
    fields: dict[str, Any] = {"kind": (typing.Literal[kind], kind)}
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
    output = data.get("output")
    outputs = {str(output): str(output)} if output is not None else {}
    layout = data.get("feature_layout")
    return Composite(
        kind,
        str(data.get("doc", "")),
        params,
        list(data["graph"]),
        outputs,
        file,
        marks,
        None if layout is None else str(layout),
    )
