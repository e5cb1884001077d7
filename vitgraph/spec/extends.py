"""Specs as edits: ``extends: <spec>`` plus ``edits:`` written with the editing verbs.

A spec that extends another takes its top-level keys (``args`` are merged, any other
key it writes replaces the base's), then applies its ``edits`` in order, each
re-validated (``vitgraph.spec.edits``; the orchestrator passes phases 3-5 down as
``validate``), so an edit that breaks the graph is reported at the
edit's own line. The base is a shipped spec name or a file in the extending spec's own
directory or the shipped specs; chains are followed and cycles reported.

    extends: vit
    edits:
      - insert_after: cls_token
        node: {id: dist_token, kind: dist_token}
      - replace: blocks.*.attn
        with: talking_heads
        set: {heads: 6}           # replace and update both take params in set:
      - update: head
        set: {classes: 10}
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vitgraph.errors import Location, Problem, SpecError
from vitgraph.ir import Source, Validated
from vitgraph.spec import edits
from vitgraph.spec.catalog import shipped_specs, spec_dir
from vitgraph.spec.document import SpecDocument
from vitgraph.spec.parse import Marks, parse_yaml
from vitgraph.spec.problems import pydantic_problems
from vitgraph.suggest import did_you_mean

#: phases 3-5 of a source (default variant, no overrides): ``vitgraph.inference.validate``
Validate = Callable[[Source], Validated]

MAX_CHAIN = 16

#: verb -> (keys it takes besides its target, keys it requires)
VERBS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # node: one new entry; nodes: several, inserted (and checked) together
    "insert_after": (("node", "nodes"), ()),
    "insert_before": (("node",), ("node",)),
    # replace and update both take their params in ``set:`` (``params:``: replace's
    # name before 0.2, still read)
    "replace": (("with", "set", "params"), ("with",)),
    "update": (("set",), ("set",)),
    "remove": ((), ()),
    "rename": (("to",), ("to",)),
}
_MERGED = ("args",)
_OWN = ("extends", "edits")


def resolve_extends(
    data: dict[str, Any], marks: Marks, path: str, validate: Validate, stack: tuple[str, ...] = ()
) -> tuple[dict[str, Any], Marks]:
    """The spec ``data`` with its base merged in and its edits applied."""
    where = marks.at(("extends",))
    base_path = _base_path(data["extends"], path, where)
    key = str(Path(base_path).resolve())
    chain = (*stack, str(Path(path).resolve()) if Path(path).exists() else path)
    if key in chain:
        names = " -> ".join(Path(p).name for p in (*chain, key))
        raise SpecError.at(where, "extends", f"specs extend each other in a cycle: {names}")
    if len(chain) > MAX_CHAIN:
        raise SpecError.at(where, "extends", f"extends chains deeper than {MAX_CHAIN} specs")
    try:
        text = Path(base_path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError.at(where, "extends", f"cannot read the base spec: {exc}") from None
    base, base_marks = parse_yaml(text, base_path)
    if not isinstance(base, dict):
        raise SpecError.at(base_marks.at(()), "", "the base spec must be a mapping")
    if "extends" in base:
        base, base_marks = resolve_extends(base, base_marks, base_path, validate, chain)
    merged, merged_marks = _merge(base, base_marks, data, marks)
    edits = data.get("edits") or []
    if not isinstance(edits, list):
        raise SpecError.at(marks.at(("edits",)), "edits", "edits must be a list of edits")
    if edits or set(data) - {"extends", "edits", "vitgraph", "name"}:
        # validated here (not only by the caller) so that a problem this spec causes in
        # the base is located in this spec
        merged, merged_marks = _apply(merged, merged_marks, edits, marks, path, validate)
    return merged, merged_marks


def _base_path(ref: Any, path: str, where: Location) -> str:
    """A shipped spec name, or a file in the spec's own directory or the shipped specs."""
    if not isinstance(ref, str) or not ref:
        raise SpecError.at(
            where, "extends", "extends names a spec: a shipped spec name or a path to a spec file"
        )
    specs = shipped_specs()
    if ref in specs:
        return specs[ref]
    if not ref.endswith((".yaml", ".yml")):
        raise SpecError.at(
            where,
            "extends",
            f"no shipped spec named '{ref}'{did_you_mean(ref, specs)}",
            "name a shipped spec or a .yaml file",
        )
    own = Path(path).parent.resolve()
    shipped = Path(str(spec_dir())).resolve()
    candidate = (own / ref).resolve()
    allowed = [root for root in (own, shipped) if candidate.is_relative_to(root)]
    if not allowed:
        raise SpecError.at(
            where,
            "extends",
            f"'{ref}' is outside the spec's own directory and the shipped specs",
            "copy the base spec next to this one",
        )
    if not candidate.is_file():
        raise SpecError.at(where, "extends", f"base spec '{ref}' does not exist")
    return str(candidate)


def _merge(
    base: dict[str, Any], base_marks: Marks, child: dict[str, Any], child_marks: Marks
) -> tuple[dict[str, Any], Marks]:
    if "graph" in child:
        raise SpecError.at(
            child_marks.at(("graph",), key=True),
            "graph",
            "a spec with 'extends' changes the base graph with 'edits', not 'graph'",
            "write the changes as edits (insert_after, replace, ...)",
        )
    merged = copy.deepcopy(base)
    marks = Marks(child_marks.file)
    replaced = {k for k in child if k not in _OWN and k not in _MERGED}
    for table, out in ((base_marks.values, marks.values), (base_marks.keys, marks.keys)):
        for p, loc in table.items():
            if not (p and p[0] in replaced):
                out[p] = loc
    for table, out in ((child_marks.values, marks.values), (child_marks.keys, marks.keys)):
        for p, loc in table.items():
            if p and p[0] not in _OWN:
                out[p] = loc
    for key, value in child.items():
        if key in _OWN:
            continue
        if key in _MERGED and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = copy.deepcopy(value)
    if "variants" in child and "default" not in child and child["variants"]:
        merged["default"] = next(iter(child["variants"]))  # the base's may be gone
    return merged, marks


def _apply(
    data: dict[str, Any],
    marks: Marks,
    edits_: list[Any],
    child_marks: Marks,
    path: str,
    validate: Validate,
) -> tuple[dict[str, Any], Marks]:
    try:
        document = SpecDocument.model_validate(data)
    except ValidationError as exc:
        raise SpecError(pydantic_problems(exc, marks, (), SpecDocument)) from None
    source = Source(data, marks, path, document)
    # before the edits, a problem in the base file is the doing of this spec's own keys
    # (its args): located there
    own = [k for k in child_marks.keys if len(k) == 1 and k[0] not in (*_OWN, "vitgraph", "name")]
    first = child_marks.at(own[0], key=True) if own else child_marks.at(("extends",))
    label = "this spec's " + ", ".join(str(k[0]) for k in own) if own else "extends"
    try:
        state = validate(source)
    except SpecError as exc:
        raise _at_child(exc, first, label) from None
    for n, item in enumerate(edits_):
        where = child_marks.at(("edits", n))
        verb, target, args = _parse_edit(item, n, where, child_marks)
        try:
            source = _one(state, verb, target, args, n, where, child_marks)
            state = validate(source)
        except SpecError as exc:  # a problem in the base file is the edit's doing: say so
            raise _at_child(exc, where, "this edit") from None
    return state.source.data, state.source.marks


def _at_child(exc: SpecError, where: Location, cause: str) -> SpecError:
    """``exc`` with each problem in a base file located at ``where`` in the extending
    spec, saying what it follows from and where in the base it is."""
    return SpecError(
        [
            p
            if p.location.file == where.file
            else Problem(
                where,
                p.path,
                f"{p.message} (after {cause}; '{p.path}' is at {_short(p.location)})",
                p.hint,
            )
            for p in exc.problems
        ]
    )


def _one(
    state: Validated,
    verb: str,
    target: Any,
    args: dict[str, Any],
    n: int,
    where: Location,
    marks: Marks,
) -> Source:
    """Apply one parsed edit with the editing verbs (``vitgraph.spec.edits``); each value
    it writes is located at its own line of the edit."""
    key = "set" if "set" in args or verb == "update" else "params"
    values = args.get(key) or {}
    value_marks = {
        str(name): marks.at(("edits", n, key, name))
        for name in (values if isinstance(values, dict) else {})
    }
    if "with" in args:
        value_marks["kind"] = marks.at(("edits", n, "with"))
    selector: dict[str, Any] = (
        {"kind": target["kind"]} if isinstance(target, dict) else {"pattern": target}
    )
    if verb in ("insert_after", "insert_before", "remove", "rename") and (isinstance(target, dict)):
        raise SpecError.at(where, f"edits[{n}].{verb}", f"{verb} takes one node id")
    if verb == "insert_after":
        return edits.insert_after(
            state, target, args["node"] if "node" in args else args["nodes"], location=where
        )
    if verb == "insert_before":
        return edits.insert_before(state, target, args["node"], location=where)
    if verb == "remove":
        return edits.remove(state, target, location=where)
    if verb == "rename":
        return edits.rename(state, target, str(args["to"]), location=where)
    if verb == "update":
        return edits.update(
            state,
            **selector,
            params=_mapping(args["set"], n, "set", where),
            location=where,
            value_marks=value_marks,
        )
    if "set" in args and "params" in args:
        raise SpecError.at(where, f"edits[{n}].params", "replace takes its params in 'set' only")
    return edits.replace(
        state,
        with_kind=str(args["with"]),
        **selector,
        params=_mapping(values, n, key, where),
        location=where,
        value_marks=value_marks,
    )


def _short(location: Location) -> str:
    """A base file's location by file name (the base is a shipped spec or a neighbour)."""
    return str(Location(Path(location.file).name, location.line, location.col))


def _mapping(value: Any, n: int, key: str, where: Location) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError.at(where, f"edits[{n}].{key}", f"'{key}' maps params to values")
    return value


def _parse_edit(
    item: Any, n: int, where: Location, marks: Marks
) -> tuple[str, Any, dict[str, Any]]:
    label = f"edits[{n}]"
    verbs = [k for k in item if k in VERBS] if isinstance(item, dict) else []
    if not isinstance(item, dict) or len(verbs) != 1:
        unknown = [str(k) for k in item if k not in VERBS] if isinstance(item, dict) else []
        guess = did_you_mean(unknown[0], VERBS) if unknown else ""
        raise SpecError.at(
            where,
            label,
            f"an edit is one of {', '.join(VERBS)} with its target{guess}",
            "for example: - remove: pos_drop",
        )
    verb = verbs[0]
    takes, needs = VERBS[verb]
    for key in item:
        if key != verb and key not in takes:
            raise SpecError.at(
                marks.at(("edits", n, key), key=True),
                f"{label}.{key}",
                f"{verb} takes no '{key}'{did_you_mean(str(key), takes)}",
                f"{verb} takes: {', '.join(takes) or 'only its target'}",
            )
    for key in needs:
        if key not in item:
            raise SpecError.at(where, label, f"{verb} needs '{key}'")
    if verb == "insert_after" and ("node" in item) == ("nodes" in item):
        raise SpecError.at(
            where, label, "insert_after needs 'node' (one entry) or 'nodes' (a list)"
        )
    target = item[verb]
    if not (isinstance(target, str) or (isinstance(target, dict) and set(target) == {"kind"})):
        raise SpecError.at(
            marks.at(("edits", n, verb)),
            f"{label}.{verb}",
            "the target is a node id pattern or {kind: <kind>}",
        )
    return verb, target, {k: v for k, v in item.items() if k != verb}
