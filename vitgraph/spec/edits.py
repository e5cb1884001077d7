"""The editing verbs as transforms of source data: ``find``, ``replace``,
``insert_after``/``insert_before``, ``remove``, ``update``, ``rename``.

Each verb reads a validated spec (``Validated``: to find what an id names) and returns a
new ``Source``; it changes the *source* spec data, not the expanded nodes, so
``repeat:``, args and expressions survive: replacing ``blocks.*.attn`` sets the
``attention`` param of the ``encoder_layer`` group once; changing one repeat writes an
``at: {index: ...}`` entry. The caller validates the result again (``Graph`` and
``extends:`` both do, through ``vitgraph.inference.validate``), so a problem is raised as
a ``SpecError`` naming the node (a shape mismatch downstream is reported at the downstream
node, with the numbers). Nothing here changes the spec it reads.
"""

from __future__ import annotations

import copy
import fnmatch
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from vitgraph.errors import Location, SpecDeprecation, SpecError
from vitgraph.ir import Node, Source, Validated
from vitgraph.spec.catalog import registry
from vitgraph.spec.document import NODE_KEYS, SpecDocument
from vitgraph.spec.parse import Marks
from vitgraph.spec.problems import pydantic_problems
from vitgraph.suggest import did_you_mean

Selector = str | Iterable[str] | None
_REF = re.compile(r"^\$(?:\{\s*)?([A-Za-z_][A-Za-z_0-9]*)(?:\s*\})?$")


@dataclass(frozen=True)
class _Target:
    """Where an expanded id lives in the source: graph entry ``entry``, repeat ``index``
    (None: the whole entry, every repeat) and ``inner`` ids inside composite blocks."""

    entry: int
    index: int | None
    inner: tuple[str, ...]


# ------------------------------------------------------------------------------ finding


def instance_kinds(graph: Validated) -> dict[str, str]:
    """Composite instances (``blocks.3``) and repeat groups (``blocks``) -> their kind."""
    kinds: dict[str, str] = dict(graph.instances)
    for node in graph.nodes:
        if node.parent and node.composite_kind:
            kinds.setdefault(node.parent, node.composite_kind)
    nodes = {n.id: n.kind for n in graph.nodes}
    for group, (kind, _count) in graph.groups.items():
        if group in kinds:
            continue
        first = f"{group}.0"
        kinds[group] = kinds.get(first) or nodes.get(first) or kind
    return kinds


def candidates(graph: Validated) -> dict[str, str]:
    """Every id an edit can name -> its kind: primitive nodes, composite instances
    (``blocks.3``) and repeat groups (``blocks``), in execution order."""
    kinds = instance_kinds(graph)
    out: dict[str, str] = {}
    for node in graph.nodes:
        parts = node.id.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if prefix not in out and prefix in kinds:
                out[prefix] = kinds[prefix]
        out[node.id] = node.kind
    for node_id, kind in graph.off.items():  # switched off by when: still in the spec
        out.setdefault(node_id, kind)
    return out


def _match(pattern: str, node_id: str) -> bool:
    """Segment-wise glob: ``*`` matches one dotted segment, ``**`` any number of them."""
    pat, parts = pattern.split("."), node_id.split(".")

    def walk(i: int, j: int) -> bool:
        if i == len(pat):
            return j == len(parts)
        if pat[i] == "**":
            return any(walk(i + 1, k) for k in range(j, len(parts) + 1))
        return j < len(parts) and fnmatch.fnmatchcase(parts[j], pat[i]) and walk(i + 1, j + 1)

    return walk(0, 0)


def find(
    graph: Validated,
    pattern: Selector = None,
    *,
    kind: str | None = None,
    where: Callable[[Node], bool] | None = None,
) -> list[str]:
    """Ids matching an id pattern (``blocks.*.attn``), a kind and/or a predicate over the
    primitive nodes, in execution order."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern or [])
    aliases = registry().aliases
    if kind is not None and kind in aliases:  # a deprecated name finds its replacement
        replacement = aliases[kind].kind
        message = f"kind '{kind}' is deprecated: use '{replacement}'"
        warnings.warn(message, SpecDeprecation, stacklevel=3)
        kind = replacement
    found = []
    nodes = {n.id: n for n in graph.nodes}
    for node_id, node_kind in candidates(graph).items():
        if patterns and not any(_match(p, node_id) for p in patterns):
            continue
        if kind is not None and node_kind != kind:
            continue
        if where is not None and (node_id not in nodes or not where(nodes[node_id])):
            continue
        found.append(node_id)
    return found


# ------------------------------------------------------------------------------ editor


class _Editor:
    """The source data of a graph being edited, its marks, and the graph it came from."""

    def __init__(
        self,
        graph: Validated,
        where: Location | None = None,
        value_marks: dict[str, Location] | None = None,
    ) -> None:
        self.graph = graph
        self.data = copy.deepcopy(graph.source.data)
        self.marks = graph.source.marks
        self.where = where
        #: where the edit writes each param's value (an ``edits:`` entry's ``set:``)
        self.value_marks = dict(value_marks or {})
        #: values this edit wrote: (the entry, the path inside it, where the edit is), so
        #: a problem with one is located at the edit, not at the base spec
        self.written: list[tuple[dict[str, Any], tuple[Any, ...], Location]] = []
        self.order: list[int | None] = list(range(len(self.entries)))  # new -> old index

    @property
    def entries(self) -> list[dict[str, Any]]:
        return self.data["graph"]

    def fail(self, node_id: str, message: str, hint: str | None = None) -> SpecError:
        return SpecError.at(self.location(node_id), node_id, message, hint)

    def location(self, node_id: str) -> Location:
        if self.where is not None:
            return self.where
        try:
            return self.graph.node(node_id).where
        except KeyError:
            for k, entry in enumerate(self.entries):
                if entry.get("id") == node_id.split(".")[0] and self.order[k] is not None:
                    return self.marks.at(("graph", self.order[k]))
        return Location(self.graph.file)

    # -- selection ----------------------------------------------------------------------

    def select(
        self,
        pattern: Selector,
        kind: str | None = None,
        where: Callable[[Node], bool] | None = None,
        verb: str = "edit",
    ) -> list[str]:
        ids = find(self.graph, pattern, kind=kind, where=where)
        if not ids:
            what = (
                pattern
                if isinstance(pattern, str)
                else (", ".join(pattern) if pattern else f"kind '{kind}'")
            )
            known = list(candidates(self.graph))
            hint_name = what if isinstance(pattern, str) else ""
            raise SpecError.at(
                self.where or Location(self.graph.file),
                str(what),
                f"{verb}: nothing matches '{what}'{did_you_mean(hint_name, known)}",
                "ids look like 'head', 'blocks' (a repeat group), 'blocks.3' or 'blocks.*.attn'",
            )
        return ids

    def target(self, node_id: str) -> _Target:
        parts = node_id.split(".")
        for k, entry in enumerate(self.entries):
            if str(entry.get("id")) != parts[0]:
                continue
            rest = parts[1:]
            if "repeat" in entry:
                if rest and rest[0].isdigit():
                    return _Target(k, int(rest[0]), tuple(rest[1:]))
                if rest:
                    raise self.fail(
                        node_id,
                        f"'{node_id}' is inside the repeat group "
                        f"'{parts[0]}': name a repeat ('{parts[0]}.0.{rest[0]}') or "
                        f"all of them ('{parts[0]}.*.{rest[0]}')",
                    )
            return _Target(k, None, tuple(rest))
        raise self.fail(node_id, f"'{node_id}' is not a node of the spec")

    def targets(self, ids: list[str]) -> list[_Target]:
        """Targets of the ids, with a repeat group's every index folded into one target
        (index None) so the edit is written once on the entry, not per repeat."""
        found = self.fold_inner([self.target(i) for i in ids])
        out: list[_Target] = []
        for t in found:
            if t.index is not None:
                count = self.repeat_count(t.entry)
                same = {u.index for u in found if u.entry == t.entry and u.inner == t.inner}
                if same >= set(range(count)):
                    t = _Target(t.entry, None, t.inner)
            if t not in out:
                out.append(t)
        return out

    def fold_inner(self, found: list[_Target]) -> list[_Target]:
        """Inside a composite, a repeat group's members (``layers.0.blocks.3.attn``) share
        one entry of the composite's YAML: an edit there must cover every repeat, and
        is written once (the index becomes ``*``)."""
        for position in range(max((len(t.inner) for t in found), default=0)):
            out: list[_Target] = []
            for t in found:
                if position < len(t.inner) and t.inner[position].isdigit():
                    group = self.instance_id(_Target(t.entry, t.index, t.inner[:position]))
                    if group in self.graph.groups:
                        count = self.graph.groups[group][1]
                        seen = {
                            u.inner[position]
                            for u in found
                            if u.entry == t.entry
                            and u.index == t.index
                            and u.inner[:position] == t.inner[:position]
                            and u.inner[position + 1 :] == t.inner[position + 1 :]
                        }
                        if seen < {str(i) for i in range(count)}:
                            node_id = self.instance_id(t)
                            pattern = ".".join([group, "*", *t.inner[position + 1 :]])
                            raise self.fail(
                                node_id,
                                f"'{node_id}' is one repeat of '{group}', "
                                "inside a composite block: an edit there applies "
                                f"to every repeat ('{pattern}')",
                            )
                        t = _Target(
                            t.entry, t.index, (*t.inner[:position], "*", *t.inner[position + 1 :])
                        )
                if t not in out:
                    out.append(t)
            found = out
        return found

    def repeat_count(self, k: int) -> int:
        return self.graph.groups[str(self.entries[k]["id"])][1]

    def instance_id(self, target: _Target) -> str:
        entry = self.entries[target.entry]
        parts = [str(entry["id"])]
        if target.index is not None or "repeat" in entry:
            parts.append(str(target.index or 0))
        return ".".join(parts + ["0" if p == "*" else p for p in target.inner])

    def composite_of(self, target: _Target) -> Any:
        """The composite block a (parent) target is an instance of."""
        instance = self.instance_id(target)
        kind = instance_kinds(self.graph).get(instance)
        comps = registry().composites
        if kind not in comps:
            raise self.fail(instance, f"'{instance}' is not a composite block")
        return comps[kind]

    # -- params -------------------------------------------------------------------------

    def set_param(self, target: _Target, name: str, value: Any, node_id: str) -> None:
        """Set one param (or ``kind``) of a target, following a composite's ``$param``
        references outwards so the edit lands where the spec writes it."""
        if not target.inner:
            entry = self.entries[target.entry]
            if target.index is None:
                entry[name] = value
                self.wrote(entry, (name,), name)
            else:
                at = entry.setdefault("at", {})
                at.setdefault(target.index, {})[name] = value
                self.wrote(entry, ("at", target.index, name), name)
            return
        if target.inner[-1] == "*":  # every repeat of an inner group: its entry
            self.set_param(
                _Target(target.entry, target.index, target.inner[:-1]), name, value, node_id
            )
            return
        parent = _Target(target.entry, target.index, target.inner[:-1])
        composite = self.composite_of(parent)
        inner_id = target.inner[-1]
        inner = next((e for e in composite.graph if str(e.get("id")) == inner_id), None)
        if inner is None:
            raise self.fail(node_id, f"'{inner_id}' is not a node of composite '{composite.kind}'")
        raw = inner.get(name)
        ref = _REF.match(raw) if isinstance(raw, str) else None
        if ref is None:
            params = [p for p in composite.params.model_fields if p != "kind"]
            written = "not set" if raw is None else f"fixed to {raw!r}"
            raise self.fail(
                node_id,
                f"'{name}' of '{inner_id}' is {written} inside composite "
                f"'{composite.kind}', not one of its params",
                f"params of {composite.kind}: {', '.join(params)}",
            )
        self.set_param(parent, ref.group(1), value, node_id)

    def wrote(self, entry: dict[str, Any], path: tuple[Any, ...], name: str) -> None:
        """Remember that this edit wrote ``entry[path]`` (param ``name``'s value)."""
        where = self.value_marks.get(name, self.where)
        if where is not None:
            self.written.append((entry, path, where))

    def inner_kind(self, target: _Target) -> Any:
        """The ``kind`` a target's source entry writes (an inner entry for composites)."""
        if target.inner and target.inner[-1] == "*":
            return self.inner_kind(_Target(target.entry, target.index, target.inner[:-1]))
        if not target.inner:
            return self.entries[target.entry].get("kind")
        composite = self.composite_of(_Target(target.entry, target.index, target.inner[:-1]))
        inner = next(e for e in composite.graph if str(e.get("id")) == target.inner[-1])
        return inner.get("kind")

    def user_set(self, target: _Target, params: dict[str, Any]) -> dict[str, Any]:
        """Of an inner entry's ``params``, those reading a param (``$heads``) that the
        spec entry of its composite writes (one level deep; deeper: none)."""
        if len(target.inner) != 1:
            return {}
        entry = self.entries[target.entry]
        at = (entry.get("at") or {}).get(target.index, {}) if target.index is not None else {}
        out = {}
        for name, value in params.items():
            ref = _REF.match(value) if isinstance(value, str) else None
            if ref is not None and (ref.group(1) in entry or ref.group(1) in at):
                out[name] = value
        return out

    def inner_params(self, target: _Target) -> dict[str, Any]:
        """The params a target's source entry writes (an inner entry for composites)."""
        if target.inner and target.inner[-1] == "*":
            return self.inner_params(_Target(target.entry, target.index, target.inner[:-1]))
        if not target.inner:
            entry = self.entries[target.entry]
            return {k: v for k, v in entry.items() if k not in NODE_KEYS}
        composite = self.composite_of(_Target(target.entry, target.index, target.inner[:-1]))
        inner = next(e for e in composite.graph if str(e.get("id")) == target.inner[-1])
        return {k: v for k, v in inner.items() if k not in NODE_KEYS}

    # -- entries ------------------------------------------------------------------------

    def insert(self, position: int, entry: dict[str, Any]) -> None:
        self.entries.insert(position, entry)
        self.order.insert(position, None)

    def delete(self, position: int) -> None:
        del self.entries[position]
        del self.order[position]

    def rewire(self, old: str, new: str, prefix: bool = False) -> None:
        """Every explicit reference to ``old`` (inputs, ``at`` inputs, outputs) -> ``new``;
        with ``prefix``, ``old.3`` -> ``new.3`` too (a renamed group's members)."""
        for entry in self.entries:
            if "inputs" in entry:
                entry["inputs"] = _swap(entry["inputs"], old, new, prefix)
            for changes in (entry.get("at") or {}).values():
                if isinstance(changes, dict) and "inputs" in changes:
                    changes["inputs"] = _swap(changes["inputs"], old, new, prefix)
        for key in ("outputs", "features") if prefix else ("outputs",):
            if self.data.get(key):
                self.data[key] = _swap(self.data[key], old, new, prefix)

    def check_new_entry(self, node: dict[str, Any], verb: str) -> dict[str, Any]:
        if not isinstance(node, dict) or "id" not in node or "kind" not in node:
            raise SpecError.at(
                self.where or Location(self.graph.file),
                verb,
                f"{verb}: the new node must be a mapping with 'id' and 'kind'",
            )
        node_id = str(node["id"])
        if node_id in candidates(self.graph) or any(
            str(e.get("id")) == node_id for e in self.entries
        ):
            raise SpecError.at(
                self.where or Location(self.graph.file),
                node_id,
                f"{verb}: id '{node_id}' is already used",
                "give the new node an id of its own",
            )
        _check_kind(str(node["kind"]), node_id, self.where or Location(self.graph.file))
        return dict(node)

    # -- result -------------------------------------------------------------------------

    def new_marks(self) -> Marks:
        """The marks with graph entries renumbered after insertions and deletions; new
        entries are located at the edit (``where``), or nowhere in particular."""
        old = self.marks
        marks = Marks(old.file)
        moved = {o: n for n, o in enumerate(self.order) if o is not None}
        for table, out in ((old.values, marks.values), (old.keys, marks.keys)):
            for path, loc in table.items():
                if len(path) >= 2 and path[0] == "graph" and isinstance(path[1], int):
                    if path[1] not in moved:
                        continue
                    path = ("graph", moved[path[1]], *path[2:])
                out[path] = loc
        fresh = self.where or Location(f"<edit of {old.file}>")
        for n, o in enumerate(self.order):
            if o is None:
                marks.values[("graph", n)] = fresh
        for entry, path, where in self.written:
            at = next((k for k, e in enumerate(self.entries) if e is entry), None)
            if at is not None:
                marks.values[("graph", at, *path)] = where
                marks.keys[("graph", at, *path)] = where
        return marks


def _swap(value: Any, old: str, new: str, prefix: bool = False) -> Any:
    def one(name: Any) -> Any:
        if name == old:
            return new
        if prefix and isinstance(name, str) and name.startswith(old + "."):
            return new + name[len(old) :]
        return name

    if isinstance(value, list):
        return [one(v) for v in value]
    return one(value)


def _kind_fields(kind: str) -> set[str] | None:
    return registry().fields(kind)


def _check_kind(kind: str, node_id: str, where: Location) -> None:
    if "$" in kind:
        return  # an expression: checked when the spec is expanded
    if _kind_fields(kind) is None:
        kinds = registry().kinds()
        raise SpecError.at(
            where,
            node_id,
            f"unknown block kind '{kind}'{did_you_mean(kind, kinds)}",
            "run `vitgraph list blocks` to see every kind",
        )


# ------------------------------------------------------------------------------ applying


def _commit(graph: Validated, editor: _Editor) -> Source:
    """The edited source data as a ``Source`` (its top level schema-checked); the caller
    validates it (phases 3-5) with the graph's variant and overrides."""
    data, marks = editor.data, editor.new_marks()
    try:
        document = SpecDocument.model_validate(data)
    except ValidationError as exc:
        raise SpecError(pydantic_problems(exc, marks, (), SpecDocument)) from None
    return Source(data, marks, graph.file, document)


def update(
    graph: Validated,
    pattern: Selector = None,
    *,
    kind: str | None = None,
    where: Callable[[Node], bool] | None = None,
    params: dict[str, Any] | None = None,
    location: Location | None = None,
    value_marks: dict[str, Location] | None = None,
    **kwargs: Any,
) -> Source:
    """Set params of every match (a repeat group's matches: written once on the entry),
    or a top-level entry's ``inputs``. Params named like this function's own arguments
    (``kind``, ``where``, ...) go in ``params={...}``; ``value_marks`` locates each
    value (an ``edits:`` entry's ``set:``)."""
    changes = {**(params or {}), **kwargs}
    if not changes:
        raise SpecError.at(
            location or Location(graph.file),
            str(pattern or kind),
            "update: no params given",
            "for example update('head', classes=10)",
        )
    editor = _Editor(graph, location, value_marks)
    ids = editor.select(pattern, kind, where, "update")
    for target in editor.targets(ids):
        node_id = editor.instance_id(target)
        for name, value in changes.items():
            if name in _OTHER_VERBS:
                raise editor.fail(
                    node_id,
                    f"update sets params, inputs, repeat, when and stochastic_depth; "
                    f"'{name}' is not one",
                    _OTHER_VERBS[name],
                )
            if name == "inputs" and target.inner:
                raise editor.fail(
                    node_id,
                    f"update: '{node_id}' is inside a composite block, whose file wires its inputs",
                    "change the inputs of the whole block (its entry in the spec)",
                )
            editor.set_param(target, name, value, node_id)
    return _commit(graph, editor)


#: entry keys update does not set, and what does
_OTHER_VERBS = {
    "id": "rename a node with rename(old, new)",
    "kind": "change a kind with replace(node, with_kind=...)",
    "at": "update one repeat by its id ('blocks.3'): the change is written under at:",
    "doc": "doc is a comment of the spec file: edit the file",
}


def replace(
    graph: Validated,
    pattern: Selector = None,
    with_kind: str | None = None,
    *,
    kind: str | None = None,
    where: Callable[[Node], bool] | None = None,
    params: dict[str, Any] | None = None,
    location: Location | None = None,
    value_marks: dict[str, Location] | None = None,
    **kwargs: Any,
) -> Source:
    """Swap the kind of every match, keeping the params the new kind also has."""
    extra = {**(params or {}), **kwargs}
    editor = _Editor(graph, location, value_marks)
    if with_kind is None:
        raise SpecError.at(
            location or Location(graph.file),
            str(pattern or kind),
            "replace: name the new kind (with_kind=...)",
        )
    ids = editor.select(pattern, kind, where, "replace")
    fields = _kind_fields(with_kind)
    _check_kind(with_kind, ids[0], editor.location(ids[0]))
    kinds = candidates(graph)
    for target in editor.targets(ids):
        node_id = editor.instance_id(target)
        _check_arity(graph, node_id, with_kind, editor)
        written = editor.inner_params(target)
        if target.inner:
            # a composite param that resolves to null is left out of the inner node (the
            # loader's rule), so it does not bind the new kind either
            written = {k: v for k, v in written.items() if k in _reaching(graph, node_id, k)}
        if target.inner and _REF.match(str(editor.inner_kind(target))):
            # a kind the composite chooses gets only the params it takes, unless the user
            # set them on the composite: those must fit the new kind
            written = editor.user_set(target, written)
        if target.inner or target.index is not None:
            # the entry's params stay (they are shared with other repeats or fixed by the
            # composite): the new kind must take every one of them
            unfit = sorted(set(written) - (fields or set()) - set(extra))
            if fields is not None and unfit:
                old = kinds.get(node_id, "?")
                raise editor.fail(
                    node_id,
                    f"cannot replace {old} with {with_kind}: "
                    f"{with_kind} has no param {', '.join(map(repr, unfit))}",
                    f"params of {with_kind}: {', '.join(sorted(fields)) or 'none'}",
                )
            if kinds.get(node_id) != with_kind:  # the same kind: only the params change
                editor.set_param(target, "kind", with_kind, node_id)
            for name, value in extra.items():
                editor.set_param(target, name, value, node_id)
            continue
        entry = editor.entries[target.entry]
        kept = {k: v for k, v in entry.items() if k in NODE_KEYS or fields is None or k in fields}
        kept["kind"] = with_kind
        kept.update(extra)
        new_entry = {k: kept[k] for k in _ordered(kept)}
        editor.entries[target.entry] = new_entry
        for name in ["kind", *extra]:
            editor.wrote(new_entry, (name,), name)
    return _commit(graph, editor)


def _reaching(graph: Validated, node_id: str, name: str) -> set[str]:
    """The params that reach a resolved node (all of ``name`` when it did not resolve)."""
    try:
        return set(graph.node(node_id).params.model_fields_set)
    except KeyError:
        return {name}


def _ordered(entry: dict[str, Any]) -> list[str]:
    head = [k for k in ("id", "kind") if k in entry]
    return head + [k for k in entry if k not in head]


def _check_arity(graph: Validated, node_id: str, kind: str, editor: _Editor) -> None:
    cls = registry().primitives.get(kind)
    try:
        node = graph.node(node_id)
    except KeyError:
        return
    if cls is not None and cls.arity is not None and cls.arity != len(node.inputs):
        raise editor.fail(
            node_id,
            f"cannot replace {node.kind} with {kind}: {kind} takes "
            f"{cls.arity} input(s), '{node_id}' has {len(node.inputs)}",
        )


def _single(editor: _Editor, pattern: str, verb: str) -> tuple[str, _Target]:
    ids = editor.select(pattern, None, None, verb)
    if len(ids) != 1:
        raise editor.fail(
            ids[0],
            f"{verb} needs one node, but '{pattern}' matches {len(ids)}",
            "name one node, e.g. 'blocks.0'",
        )
    target = editor.target(ids[0])
    if target.inner:
        raise editor.fail(
            ids[0],
            f"{verb}: '{ids[0]}' is inside a composite block; edit the "
            "composite's params, or insert/remove around the whole block",
        )
    return ids[0], target


def insert_after(
    graph: Validated,
    pattern: str,
    node: dict[str, Any] | list[dict[str, Any]],
    *,
    location: Location | None = None,
) -> Source:
    """Insert ``node`` taking ``pattern``'s output; its users take the new node instead.
    A list of nodes is inserted in one edit (checked once, so a node may be used only by
    a later one of them): the first takes ``pattern``'s output, each one without
    ``inputs`` the one before, and ``pattern``'s users take the last."""
    editor = _Editor(graph, location)
    node_id, target = _single(editor, pattern, "insert_after")
    if isinstance(node, list):
        return _insert_chain(graph, editor, node_id, target, node)
    new = editor.check_new_entry(node, "insert_after")
    new_id = str(new["id"])
    k = target.entry
    entry = editor.entries[k]
    last = target.index is None or target.index == editor.repeat_count(k) - 1
    if last:
        # after a whole entry (or the last repeat): it follows the entry, its users move
        group = str(entry["id"])
        editor.rewire(group, new_id)
        editor.rewire(node_id, new_id)
        editor.insert(k + 1, {"id": new_id, "kind": new.pop("kind"), **new})
        return _commit(graph, editor)
    # inside a repeat group: the next repeat takes the new node (``at``); the new entry
    # follows the group and names its input, and the entry after the group keeps its input
    follower = k + 1
    editor.rewire(node_id, new_id)
    if follower < len(editor.entries) and "inputs" not in editor.entries[follower]:
        editor.entries[follower]["inputs"] = [str(entry["id"])]
    at = entry.setdefault("at", {})
    at.setdefault(target.index + 1, {})["inputs"] = [new_id]  # type: ignore[operator]
    new.setdefault("inputs", [node_id])
    editor.insert(follower, {"id": new_id, "kind": new.pop("kind"), **new})
    return _commit(graph, editor)


def _insert_chain(
    graph: Validated, editor: _Editor, node_id: str, target: _Target, nodes: list[Any]
) -> Source:
    if not nodes:
        raise editor.fail(node_id, "insert_after: nodes is an empty list")
    k = target.entry
    if not (target.index is None or target.index == editor.repeat_count(k) - 1):
        raise editor.fail(node_id, "insert_after: several nodes go after a whole entry")
    new = [editor.check_new_entry(n, "insert_after") for n in nodes]
    ids = [str(n["id"]) for n in new]
    if len(set(ids)) != len(ids):
        raise editor.fail(node_id, f"insert_after: the new ids repeat ({', '.join(ids)})")
    editor.rewire(str(editor.entries[k]["id"]), ids[-1])
    editor.rewire(node_id, ids[-1])
    for offset, entry in enumerate(new, 1):
        editor.insert(k + offset, {"id": str(entry.pop("id")), "kind": entry.pop("kind"), **entry})
    return _commit(graph, editor)


def insert_before(
    graph: Validated, pattern: str, node: dict[str, Any], *, location: Location | None = None
) -> Source:
    """Insert ``node`` between ``pattern`` and its (single) input."""
    editor = _Editor(graph, location)
    node_id, target = _single(editor, pattern, "insert_before")
    if target.index not in (None, 0):
        previous = f"{editor.entries[target.entry]['id']}.{target.index - 1}"
        return insert_after(graph, previous, node, location=location)
    inputs = _inputs_of(graph, node_id)
    if len(inputs) != 1:
        raise editor.fail(
            node_id,
            f"insert_before: '{node_id}' takes {len(inputs)} inputs "
            f"({', '.join(inputs)}); name the input to insert after instead",
        )
    new = editor.check_new_entry(node, "insert_before")
    k = target.entry
    entry = editor.entries[k]
    new_entry = {"id": str(new["id"]), "kind": new.pop("kind"), **new}
    if "inputs" in entry:
        new_entry.setdefault("inputs", entry["inputs"])
        entry["inputs"] = [new_entry["id"]]
    editor.insert(k, new_entry)
    return _commit(graph, editor)


def _inputs_of(graph: Validated, node_id: str) -> list[str]:
    """Inputs of a node, or of a composite instance / group (what its first node takes)."""
    try:
        return list(graph.node(node_id).inputs)
    except KeyError:
        pass
    members = [n for n in graph.nodes if n.id.startswith(node_id + ".")]
    inside = {n.id for n in members}
    outside: list[str] = []
    for n in members:
        outside += [i for i in n.inputs if i not in inside and i not in outside]
    return outside


def remove(graph: Validated, pattern: str, *, location: Location | None = None) -> Source:
    """Remove a node, a composite block or a whole repeat group; its first input takes
    its place (its users and, for the model's output, the output read that input). A
    node with several inputs leaves the others to their other users (DeiT's head_dist:
    head becomes the output); one switched off by ``when:`` leaves the spec."""
    editor = _Editor(graph, location)
    node_id, target = _single(editor, pattern, "remove")
    if target.index is not None:
        group = editor.entries[target.entry]["id"]
        raise editor.fail(
            node_id,
            f"cannot remove one repeat of '{group}'",
            f"change its count: update('{group}', repeat=...)",
        )
    off = graph.off
    inputs = [graph.resolve(node_id)] if node_id in off else _inputs_of(graph, node_id)
    k = target.entry
    entry = editor.entries[k]
    name = _source_name(graph, inputs[0], avoid=str(entry["id"]))
    last = k == len(editor.entries) - 1
    editor.rewire(str(entry["id"]), name)
    follower = k + 1
    if (
        "inputs" in entry
        and follower < len(editor.entries)
        and ("inputs" not in editor.entries[follower])
    ):
        editor.entries[follower]["inputs"] = [name]
    editor.delete(k)
    if last and not editor.data.get("outputs") and editor.entries:
        # the output was the last entry; now it is what the removed one read first
        if str(editor.entries[-1].get("id")) != name:
            editor.data["outputs"] = [name]
    return _commit(graph, editor)


def _source_name(graph: Validated, node_id: str, avoid: str = "") -> str:
    """How the spec names an expanded node: itself, or the group whose output it is (never
    an entry switched off by when:, which is only an alias of its input)."""
    if node_id == "input" or "." not in node_id:
        return node_id
    off = graph.off
    for alias, target in graph.aliases.items():
        if target == node_id and "." not in alias and alias not in off and alias != avoid:
            return alias
    return node_id


def rename(graph: Validated, old: str, new: str, *, location: Location | None = None) -> Source:
    """Rename a top-level node or repeat group (its weights' keys follow)."""
    editor = _Editor(graph, location)
    node_id, target = _single(editor, old, "rename")
    if target.index is not None:
        raise editor.fail(
            node_id,
            "rename: a single repeat cannot be renamed",
            f"rename the whole group '{editor.entries[target.entry]['id']}'",
        )
    if not new or any(c in new for c in " .:/$"):
        raise editor.fail(node_id, f"rename: '{new}' must be a name without spaces, dots or ':/$'")
    if any(str(e.get("id")) == new for e in editor.entries):
        raise editor.fail(node_id, f"rename: id '{new}' is already used")
    entry = editor.entries[target.entry]
    editor.rewire(str(entry["id"]), new, prefix=True)
    entry["id"] = new
    return _commit(graph, editor)
