"""Writing a validated spec back as YAML: ``to_yaml`` gives a spec that rebuilds the
same graph on its own (``repeat:``, args and expressions kept; the variant becomes the
default and the overrides are written in). Given phases 3-5 (``validate``), it writes
only the variants that still validate: an edit or an override written into a shared
entry may not fit every variant."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import yaml

from vitgraph.ir import Source, Validated
from vitgraph.spec.document import SpecDocument

#: phases 3-5 of a source with a variant (``vitgraph.inference.validate``)
Validate = Callable[[Source, str | None], Validated]


def spec_data(graph: Validated) -> dict[str, Any]:
    """The graph's spec as data: its variant becomes the default and its overrides are
    written in, so loading the result gives this same graph."""
    data = copy.deepcopy(graph.source.data)
    if graph.variant is not None:
        data["default"] = graph.variant
    node_ids = {str(e.get("id")) for e in data["graph"]}
    for key, value in graph.overrides.items():
        head, _, rest = key.partition(".")
        if key in data.get("args", {}):
            if graph.variant is not None:
                data["variants"][graph.variant][key] = value
            else:
                data["args"][key] = value
        elif head == "input":
            data["input"][rest] = value
        elif head in node_ids:
            entry = next(e for e in data["graph"] if str(e.get("id")) == head)
            entry[rest] = value
    return data


class _Dumper(yaml.SafeDumper):
    pass


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items())  # keep key order


_Dumper.add_representer(dict, _represent_dict)

_TOP_LEVEL = (
    "vitgraph",
    "name",
    "paper",
    "default",
    "input",
    "args",
    "variants",
    "pretrained",
    "data",
    "stochastic_depth",
    "graph",
    "outputs",
    "features",
)


def to_yaml(
    graph: Validated,
    *,
    name: str | None = None,
    note: str | None = None,
    validate: Validate | None = None,
) -> str:
    """A spec that rebuilds this graph (``repeat:``, args and expressions kept), named
    ``name`` when given, with ``note`` as its first comment line; with ``validate``, the
    variants that no longer validate are left out (the graph's own always stays)."""
    data = spec_data(graph)
    if name is not None:
        data["name"] = name
    if validate is not None and isinstance(data.get("variants"), dict):
        data["variants"] = {
            variant: values
            for variant, values in data["variants"].items()
            if variant == graph.variant or _validates(graph, data, variant, validate)
        }
    ordered = {k: data[k] for k in _TOP_LEVEL if k in data}
    ordered.update({k: v for k, v in data.items() if k not in ordered})
    lines = [f"# {note}"] if note else []
    for key, value in ordered.items():
        if key in ("args", "variants", "pretrained") and isinstance(value, dict) and value:
            lines.append(f"{key}:")
            lines += [f"  {_inline(name)}: {_inline(item)}" for name, item in value.items()]
        elif key == "graph" and isinstance(value, list):
            lines.append("graph:")
            for entry in value:
                lines += _entry_lines(entry)
        else:
            lines.append(f"{key}: {_inline(value)}")
    return "\n".join(lines) + "\n"


def _validates(graph: Validated, data: dict[str, Any], variant: str, validate: Validate) -> bool:
    from vitgraph.errors import SpecError

    try:
        document = SpecDocument.model_validate(data)
        validate(Source(data, graph.source.marks, graph.file, document), variant)
    except (SpecError, ValueError):
        return False
    return True


def _inline(value: Any) -> str:
    text = yaml.dump(
        value,
        Dumper=_Dumper,
        default_flow_style=True,
        width=10**6,
        allow_unicode=True,
        sort_keys=False,
    )
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _entry_lines(entry: Any) -> list[str]:
    """One graph entry: on one line when it is short and flat, else a block."""
    one = f"  - {_inline(entry)}"
    if (
        isinstance(entry, dict)
        and len(one) <= 100
        and not any(isinstance(v, dict) for v in entry.values())
    ):
        return [one]
    if not isinstance(entry, dict):
        return [one]
    lines = []
    for n, (key, value) in enumerate(entry.items()):
        lead = "  - " if n == 0 else "    "
        if isinstance(value, dict) and value:
            lines.append(f"{lead}{_inline(key)}:")
            lines += [f"      {_inline(k)}: {_inline(v)}" for k, v in value.items()]
        else:
            lines.append(f"{lead}{_inline(key)}: {_inline(value)}")
    return lines
