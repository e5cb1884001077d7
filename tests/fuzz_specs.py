"""Structured fuzzing of the loader, validator and builder (#25 item 4).

A case names a block kind and a mode. It takes an *anchor* of that kind (a spec in which
an entry of the kind validates: a shipped variant with its composites expanded into
primitives, a shipped spec's top-level composite entry, or one of the small ``SEEDS``
below for the kinds no shipped spec holds where they can be reached) and redraws that
entry's params with Hypothesis strategies built from the kind's params model:

- ``valid``: up to two params get new values of their declared types and constraints
  (the spec may still fail a shape rule: a located SpecError, not an escape);
- ``invalid``: exactly one constraint is broken: one param gets a value its annotation
  refuses (the wrong type, past a bound, outside a choice), a required param goes
  missing, an unknown param appears, or one rule of the entry itself is broken (an
  input that names no node or makes a cycle, an unknown kind, a duplicate or dotted id,
  a repeat of 0, -3 or 10**9, a ``when:`` that is no flag).

The loader and validator, and for a spec that validates the build on the meta device,
may only raise a SpecError whose every problem is located; anything else is an escape.
An ``invalid`` case that validates is *accepted*: the validator let a broken constraint
through (the report lists them; there must be none).
"""

from __future__ import annotations

import copy
import types
import typing
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union

import annotated_types
import yaml
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from vitgraph.spec.catalog import registry, variant_index

#: small specs for the kinds no shipped variant reaches (or reaches only inside another
#: composite): each validates as written
SEEDS: dict[str, str] = {
    # vit_relpos picks its layer kind by an expression (rpn): no entry names it as written
    "res_post": """
vitgraph: 1
name: seed_res_post
input: {channels: 3, size: 32}
graph:
  - {id: embed, kind: patch_embed, patch: 8, dim: 32}
  - {id: layer, kind: res_post_layer, heads: 2, rel_pos: mlp}
  - {id: pool, kind: mean_pool}
  - {id: head, kind: linear_head, classes: 5}
""",
    "pooling": """
vitgraph: 1
name: seed_pooling
input: {channels: 3, size: 32}
graph:
  - {id: embed, kind: patch_embed, patch: 8, dim: 32}
  - {id: drop, kind: patch_dropout, rate: 0.25}
  - {id: layer, kind: parallel_layer, heads: 2}
  - {id: avgmax, kind: avgmax_pool}
  - {id: max, kind: max_pool, inputs: [layer]}
  - {id: sum, kind: add, inputs: [avgmax, max]}
  - {id: head, kind: linear_head, classes: 5}
""",
    "conv": """
vitgraph: 1
name: seed_conv
input: {channels: 3, size: 32}
graph:
  - {id: se, kind: squeeze_excite, ratio: 0.5}
  - {id: embed, kind: patch_embed, patch: 4, dim: 32}
  - {id: swin, kind: swin_layer, heads: 2, window: 4}
  - {id: swin2, kind: swinv2_layer, heads: 2, window: 4}
  - {id: pvt, kind: pvt_layer, heads: 2, sr_ratio: 2}
  - {id: pool, kind: mean_pool}
  - {id: head, kind: linear_head, classes: 5}
""",
    "t2t": """
vitgraph: 1
name: seed_t2t
input: {channels: 3, size: 32}
graph:
  - {id: split, kind: soft_split, kernel: 7, stride: 4, padding: 2}
  - {id: t2t, kind: t2t_layer, out_dim: 16}
  - {id: pool, kind: mean_pool}
  - {id: head, kind: linear_head, classes: 5}
""",
    "palette": """
vitgraph: 1
name: seed_palette
input: {channels: 3, size: 8}
graph:
  - {id: quantize, kind: palette_quantize, colors: 16}
  - {id: embed, kind: token_embed, dim: 16}
  - {id: pos, kind: seq_pos}
  - {id: layer, kind: encoder_layer, heads: 2, causal: true}
  - {id: logits, kind: token_logits, vocab: 16}
""",
}


@dataclass(frozen=True)
class Anchor:
    """A spec (as data) whose ``graph[index]`` is an entry of ``kind`` that validates."""

    label: str
    data: dict[str, Any]
    index: int
    kind: str


def _sid(node_id: str) -> str:
    return node_id.replace(".", "_")


@cache
def _state(variant: str) -> tuple[Any, ...]:
    import vitgraph

    return vitgraph.load(variant)._state()


def flatten(variant: str) -> dict[str, Any]:
    """A shipped variant as a spec of primitives only: every node of its expanded graph
    an entry with its params written out (composites and repeats unrolled)."""
    source, _, _, expanded, _ = _state(variant)
    graph = []
    for node in expanded.nodes:
        entry: dict[str, Any] = {
            "id": _sid(node.id),
            "kind": node.kind,
            "inputs": [_sid(i) for i in node.inputs],
        }
        entry.update(node.params.model_dump(mode="json", exclude_defaults=True, exclude={"kind"}))
        graph.append(entry)
    data: dict[str, Any] = {
        "vitgraph": 1,
        "name": f"flat_{variant}",
        "input": source.data["input"],
        "args": dict(expanded.args),
        "graph": graph,
    }
    for key in ("init", "outputs", "features"):
        if key in source.data:
            names = getattr(expanded, key) if key != "init" else source.data["init"]
            data[key] = (
                names if key == "init" else [_sid(expanded.aliases.get(n, n)) for n in names]
            )
    return data


def _shipped(variant: str) -> dict[str, Any]:
    source = _state(variant)[0]
    data = copy.deepcopy(source.data)
    data.pop("extends", None)
    data["default"] = variant
    return data


@cache
def anchors(variants: tuple[str, ...] | None = None) -> dict[str, list[Anchor]]:
    """Up to three anchors per kind: the smallest shipped variants that hold it (by node
    count; the expanded graph for a primitive, the spec's own graph for a composite),
    then the seeds. ``variants``: only these shipped variants (default: every one)."""
    reg = registry()
    sizes: dict[str, int] = {}
    primitive_at: dict[str, list[str]] = {}
    composite_at: dict[str, list[str]] = {}
    for variant in variants or variant_index():
        source, _, _, expanded, _ = _state(variant)
        sizes[variant] = len(expanded.nodes)
        for node in expanded.nodes:
            primitive_at.setdefault(node.kind, []).append(variant)
        for entry in source.data["graph"]:
            if entry.get("kind") in reg.composites:
                composite_at.setdefault(entry["kind"], []).append(variant)
    found: dict[str, list[Anchor]] = {}
    flat: dict[str, dict[str, Any]] = {}
    shipped: dict[str, dict[str, Any]] = {}
    for kind, at in [*primitive_at.items(), *composite_at.items()]:
        composite = kind in reg.composites
        for variant in sorted(set(at), key=lambda v: (sizes[v], v))[:3]:
            if composite:
                data = shipped.setdefault(variant, _shipped(variant))
            else:
                data = flat.setdefault(variant, flatten(variant))
            index = next(i for i, e in enumerate(data["graph"]) if e.get("kind") == kind)
            found.setdefault(kind, []).append(Anchor(variant, data, index, kind))
    for name, text in SEEDS.items():
        data = yaml.safe_load(text)
        for index, entry in enumerate(data["graph"]):
            found.setdefault(entry["kind"], []).append(
                Anchor(f"seed_{name}", data, index, entry["kind"])
            )
    return found


# -- values from a params model's annotations -------------------------------------------


def _bounds(meta: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in meta:
        for constraint in [item, *getattr(item, "metadata", [])]:
            for attr in ("gt", "ge", "lt", "le"):
                if isinstance(constraint, getattr(annotated_types, attr.capitalize())):
                    out[attr] = getattr(constraint, attr)
    return out


def valid_values(annotation: Any) -> st.SearchStrategy[Any]:
    """Values of ``annotation``: its choices, numbers inside its bounds (small, with the
    edges), lists of those; a union draws from each member."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        base, *meta = args
        bounds = _bounds(meta)
        if base is int:
            low = bounds["gt"] + 1 if "gt" in bounds else bounds.get("ge", -3)
            high = bounds["lt"] - 1 if "lt" in bounds else bounds.get("le", 64)
            return st.integers(low, max(low, high))
        if base is float:
            low = bounds.get("gt", bounds.get("ge", -2.0))
            high = bounds.get("lt", bounds.get("le", 8.0))
            return st.floats(low, high, exclude_min="gt" in bounds, exclude_max="lt" in bounds).map(
                lambda x: round(x, 4) if low < round(x, 4) < high else x
            )
        return valid_values(base)
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (Union, types.UnionType):
        return st.one_of([valid_values(a) for a in args])
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return st.tuples(*[valid_values(a) for a in args]).map(list)
        return st.lists(valid_values(args[0] if args else int), min_size=1, max_size=4)
    if annotation is type(None):
        return st.none()
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(-3, 64)
    if annotation is float:
        return st.floats(-2.0, 8.0).map(lambda x: round(x, 4))
    if annotation is str:
        return st.sampled_from(["x", "none", "gelu", "a_b"])
    return st.nothing()


#: candidate values that break a constraint: each names the constraint it breaks
BREAKERS: list[tuple[str, Any]] = [
    ("a string where a number or flag is", "x"),
    ("a fraction where an integer is", 2.5),
    ("zero", 0),
    ("a negative number", -1),
    ("a negative fraction", -0.5),
    ("one", 1.0),
    ("a huge number", 1e300),
    ("a list where a scalar is", [1, 2]),
    ("a mapping", {"a": 1}),
    ("null where a value is required", None),
    ("a word outside the choices", "not_a_choice"),
    ("an integer where a string is", 7),
    ("a list with zero", [0]),
    ("a list of strings", ["x"]),
    ("an empty list", []),
]


@cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def breakers(annotation: Any) -> list[tuple[str, Any]]:
    """The ``BREAKERS`` that ``annotation`` refuses (checked with pydantic itself, so each
    breaks exactly the constraints its annotation declares, nothing else)."""
    out = []
    for name, value in BREAKERS:
        try:
            _adapter(annotation).validate_python(value)
        except ValidationError:
            out.append((name, value))
    return out


def fields(kind: str) -> dict[str, tuple[Any, bool]]:
    """A kind's params: name -> (annotation, required)."""
    reg = registry()
    model = reg.primitives[kind] if kind in reg.primitives else reg.composites[kind].params
    return {
        # pydantic keeps a top-level Annotated's constraints (``Field(gt=0)``) apart, in
        # ``metadata``: put them back, so the strategies see the bounds
        name: (
            Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation,
            info.is_required(),
        )
        for name, info in model.model_fields.items()
        if name != "kind"
    }


# -- the cases ------------------------------------------------------------------------


@dataclass
class Case:
    kind: str
    mode: str  # "valid" or "invalid"
    anchor: str
    change: str  # what was redrawn or broken
    text: str


@st.composite
def cases(draw: st.DrawFn, variants: tuple[str, ...] | None = None) -> Case:
    """One case: a kind (each equally likely), one of its anchors, a mode, the change."""
    found = anchors(variants)
    kind = draw(st.sampled_from(sorted(found)))
    anchor = draw(st.sampled_from(found[kind]))
    data = copy.deepcopy(anchor.data)
    entry = data["graph"][anchor.index]
    params = fields(kind)
    mode = draw(st.sampled_from(["valid", "invalid"]))
    if mode == "valid":
        names = sorted(n for n, (a, _) in params.items() if not draw_nothing(a))
        chosen = draw(st.lists(st.sampled_from(names), max_size=2, unique=True)) if names else []
        for name in chosen:
            entry[name] = draw(valid_values(params[name][0]))
        change = ", ".join(f"{n}={entry[n]!r}"[:60] for n in chosen) or "as anchored"
    else:
        ids = [str(e.get("id")) for e in data["graph"]]
        options: list[tuple[str, Any, Any]] = [
            ("unknown param", "bogus_param", 1),
            ("input names no node", "inputs", ["no_such_node"]),
            ("a cycle: reads the last node", "inputs", [ids[-1]]),
            ("unknown kind", "kind", f"{kind}x"),
            ("the id of another entry", "id", ids[anchor.index - 1]),
            ("an id with a dot", "id", "a.b"),
            ("repeat 0", "repeat", 0),
            ("a negative repeat", "repeat", -3),
            ("a huge repeat", "repeat", "${10**9}"),
            ("when not a flag", "when", "maybe"),
            ("an expression naming no arg", "inputs", ["$nowhere"]),
        ]
        for name, (annotation, required) in params.items():
            if required:
                options.append(("missing required", name, None))
            for label, value in breakers(annotation):
                options.append((label, name, value))
        label, name, value = draw(st.sampled_from(options))
        if label == "missing required":
            entry.pop(name, None)
        else:
            entry[name] = copy.deepcopy(value)
        change = f"{name}: {label}"
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return Case(kind, mode, anchor.label, change, text)


def draw_nothing(annotation: Any) -> bool:
    return valid_values(annotation).is_empty


#: what ``run`` returns for a spec that validates and builds a layer with no units
EMPTY_LAYER = "ok, with a zero-size tensor"


def run(case: Case, build: bool = True) -> str:
    """'ok' (``EMPTY_LAYER`` when the build made a zero-size parameter or buffer, as
    ``classes: 0`` does on purpose) or the first problem's message; raises anything that
    is not a located SpecError (an escape)."""
    import vitgraph
    from vitgraph import SpecError

    try:
        graph = vitgraph.load(f"fuzz/{case.anchor}.yaml", text=case.text)
        if build:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                graph.build(device="meta")
            if any("zero-element" in str(w.message) for w in caught):
                return EMPTY_LAYER
    except SpecError as exc:
        for problem in exc.problems:
            assert problem.location.file, f"unlocated problem {problem}"
        return exc.problems[0].message
    return "ok"
