"""Phase 3, expand: a source spec into a flat list of typed nodes.

``expand`` applies the variant and the overrides, evaluates expressions, validates every
entry against its block kind and inlines composite blocks and ``repeat:`` groups.
Problems are collected and raised together as one SpecError, each at its
``file:line:col``.

Besides its params, an entry may carry (``NODE_KEYS``):

- ``when: <bool>`` (``$distilled``, ``${i > 0}``, per repeat): false makes the entry a
  pass-through of its first input. The node is not built; its id names that input, so
  the entries that read it (or take it as their previous entry) read the input instead.
  Its kind and params are still checked, so a typo shows in every variant.
- named outputs: a composite with several ``outputs:`` (``vitgraph.spec.composites``) is
  read as ``<id>.<name>`` (``blocks.3.small``; ``blocks.small`` for a repeat group's
  last repeat); ``<id>`` alone is the main output, as before. A repeated composite whose
  named inputs are all outputs chains: repeat 0 takes the entry's ``inputs:``, repeat
  i > 0 the outputs of repeat i - 1 of the same names. An entry that gives its inputs per
  index (``at: {i: {inputs: ...}}``, or ``inputs:`` reading ``i`` or ``$prev``, as specs
  wrote them before) keeps them.
- ``stochastic_depth: false | {layer: k}``: the entry's place in the spec's schedule.

The spec's ``stochastic_depth: {rate: R}`` is applied last (``schedule``): the nodes
whose kind marks a field as a stochastic-depth rate (``DropPathRate``) are grouped in
layers, each layer the innermost repeat or composite instance holding them (an encoder
layer) unless an enclosing entry says ``{layer: k}`` (row k of its composite instance:
CrossViT's two branches and their fusion share rows). With L layers in graph order, the
rates of layer k all become ``R * k / (L - 1)``: timm's ``linspace(0, R, L)``. A spec
entry that writes a stochastic-depth param itself (``drop_path: 0.1``, an ``at:`` index
or a ``--set`` that does) keeps its own rates, its layers still counted; anything under
``stochastic_depth: false`` keeps its rates and is not counted (CaiT's class-attention
layers, were CaiT to ramp).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from vitgraph.block import Block
from vitgraph.errors import Location, Problem, SpecDeprecation, SpecError
from vitgraph.ir import Expanded, Node, Segment, Source
from vitgraph.registry import Composite
from vitgraph.shapes import Ids, Image, Mask, TensorType
from vitgraph.spec.catalog import registry
from vitgraph.spec.document import NODE_KEYS
from vitgraph.spec.expressions import ExpressionError, names_in, substitute
from vitgraph.spec.overrides import OVERRIDE_FILE
from vitgraph.spec.parse import Path as YPath
from vitgraph.spec.problems import pydantic_problems
from vitgraph.suggest import did_you_mean
from vitgraph.vocabulary import stochastic_depth_fields

MAX_REPEAT = 1000
MAX_NODES = 20_000
MAX_COMPOSITE_DEPTH = 16
#: the largest image side accepted (a bound, so counting a spec never overflows torch's sizes)
MAX_INPUT_SIDE = 65_536
_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")


class _Expander:
    def __init__(self, source: Source, variant: str | None, overrides: dict[str, Any]):
        self.source = source
        self.doc = source.document
        self.marks = source.marks
        self.variant = variant
        self.overrides = overrides
        self.problems: list[Problem] = []
        self.nodes: list[Node] = []
        self.aliases: dict[str, str] = {}
        self.groups: dict[str, tuple[str, int]] = {}
        self.node_overrides: dict[str, dict[str, Any]] = {}
        self.failed: set[str] = set()  # ids whose entry had a problem (dependents are skipped)
        self.registry = registry()
        #: composite instance -> its named outputs (name -> the node computing it)
        self.outputs_of: dict[str, dict[str, str]] = {}
        self.instances: dict[str, str] = {}  # composite instance -> its kind
        self.reported: set[tuple[Location, str]] = set()  # see ``fail_once``
        #: inner node id -> the composite param that chose its kind ("encoder_layer's
        #: attention"), for the hints of the problems it causes
        self.chosen: dict[str, str] = {}
        self.off: dict[str, str] = {}  # entries switched off by when: -> their kind
        #: node id -> its place in the stochastic-depth schedule (see ``_Context.depth``)
        self.depth: dict[str, tuple[_Layer | None, bool]] = {}

    def resolve_init(self) -> dict[str, str]:
        """The spec's ``init:`` mapping with every key a kind: a deprecated name resolves
        to its replacement (with a warning), an unknown one is a located error (it would
        otherwise change nothing, silently)."""
        resolved: dict[str, str] = {}
        for kind, scheme in self.doc.init.items():
            where = self.marks.at(("init", kind), key=True)
            if kind in self.registry.aliases:
                alias = self.registry.aliases[kind]
                warnings.warn(
                    f"{where}: init.{kind}: kind '{kind}' is deprecated: use '{alias.kind}'",
                    SpecDeprecation,
                    stacklevel=2,
                )
                kind = alias.kind
            elif kind not in self.registry.primitives:
                self.fail(
                    where,
                    f"init.{kind}",
                    f"init names '{kind}', which is not a block kind"
                    f"{did_you_mean(kind, self.registry.primitives)}",
                    "init maps a primitive kind of the graph to a scheme",
                )
                continue
            resolved[kind] = scheme
        return resolved

    def fail(self, location: Location, path: str, message: str, hint: str | None = None):
        self.problems.append(Problem(location, path, message, hint))

    def fail_once(self, location: Location, path: str, message: str, hint: str | None = None):
        """A problem of a reserved key, reported once per entry (not once per repeat)."""
        key = (location, path.rpartition(".")[2])
        if key not in self.reported:
            self.reported.add(key)
            self.fail(location, path, message, hint)

    # -- arguments ----------------------------------------------------------------------

    def resolve_args(self) -> dict[str, Any]:
        raw: dict[str, Any] = dict(self.doc.args)
        marks: dict[str, Location] = {k: self.marks.at(("args", k)) for k in raw}
        if self.variant is not None:
            for key, value in self.doc.variants[self.variant].items():
                if key not in raw:
                    self.fail(
                        self.marks.at(("variants", self.variant, key), key=True),
                        f"variants.{self.variant}.{key}",
                        f"variant sets '{key}', which is not an arg{did_you_mean(key, raw)}",
                        "declare it under args:",
                    )
                    continue
                raw[key] = value
                marks[key] = self.marks.at(("variants", self.variant, key))
        self.arg_marks = marks
        entry_ids = [str(e["id"]) for e in self.doc.graph if isinstance(e, dict) and "id" in e]
        node_ids = set(entry_ids)
        for key, value in self.overrides.items():
            head, _, rest = key.partition(".")
            if key in raw:
                raw[key] = value
                marks[key] = Location(OVERRIDE_FILE)
            elif head == "input" and rest in ("channels", "size"):
                continue  # applied in resolve_input
            elif head in node_ids and "." in rest:
                inner, _, param = rest.rpartition(".")
                self.fail(
                    Location(OVERRIDE_FILE),
                    key,
                    f"--set reaches the params of the spec's entries ('{head}.{param}'), "
                    f"not of the nodes inside '{head}'",
                    f"set '{head}.{param}' (every repeat and inner node reading it follows), "
                    f"or edit one node with Graph.update('{head}.{inner}', {param}=...)",
                )
            elif head in node_ids and rest:
                self.node_overrides.setdefault(head, {})[rest] = value
            else:
                # a mistyped node keeps its param: 'hed.classes' -> 'head.classes'
                nodes = [f"{n}.{rest}" for n in entry_ids] if rest else []
                guess = did_you_mean(key, [*raw, "input.size", "input.channels", *nodes])
                self.fail(
                    Location(OVERRIDE_FILE),
                    key,
                    f"'{key}' names no arg, input field or graph node{guess}",
                    f"args of this spec: {', '.join(raw) or 'none'}; "
                    f"entries: {', '.join(entry_ids)}",
                )
        resolved: dict[str, Any] = {}
        pending = dict(raw)
        while pending:
            progressed = False
            for key in list(pending):
                deps = names_in(pending[key]) & set(pending)
                if deps - {key}:
                    continue
                try:
                    resolved[key] = self.evaluate(pending.pop(key), resolved)
                except ExpressionError as exc:
                    self.fail(marks[key], f"args.{key}", str(exc))
                    resolved[key] = None
                progressed = True
            if not progressed:
                cycle = ", ".join(sorted(pending))
                self.fail(
                    marks[next(iter(pending))],
                    "args",
                    f"args refer to each other in a cycle: {cycle}",
                )
                break
        return resolved

    def evaluate(self, value: Any, variables: dict[str, Any]) -> Any:
        if isinstance(value, list):
            return [self.evaluate(v, variables) for v in value]
        if isinstance(value, dict):
            return {k: self.evaluate(v, variables) for k, v in value.items()}
        return substitute(value, variables)

    def resolve_input(self, args: dict[str, Any]) -> TensorType:
        raw = dict(self.doc.input)
        for key in ("channels", "size", "ids", "vocab", "grid"):
            if f"input.{key}" in self.overrides:
                raw[key] = self.overrides[f"input.{key}"]
        try:
            values = {k: self.evaluate(v, args) for k, v in raw.items()}
        except ExpressionError as exc:
            self.fail(self.marks.at(("input",)), "input", str(exc))
            return Image(3, 1, 1)
        from vitgraph.spec.document import InputSpec

        try:
            spec = InputSpec.model_validate(values)
        except ValidationError as exc:
            self.problems += pydantic_problems(exc, self.marks, ("input",), InputSpec)
            return Image(3, 1, 1)
        if spec.ids is not None:
            if spec.extra:
                self.fail(
                    self.marks.at(("input", "extra")),
                    "input.extra",
                    "extra inputs (pixel masks) describe an image input, not ids",
                )
            return self.resolve_ids(spec)
        size = spec.size
        assert size is not None
        sides = size if isinstance(size, list) else [size]
        if any(side > MAX_INPUT_SIDE for side in sides) or spec.channels > MAX_INPUT_SIDE:
            self.fail(
                self.marks.at(("input",)),
                "input",
                f"input {spec.channels} x {size} is larger than {MAX_INPUT_SIDE:,} "
                "(channels or pixels per side)",
            )
            return Image(3, 1, 1)
        if isinstance(size, list):
            if len(size) != 2 or min(size) <= 0:
                self.fail(
                    self.marks.at(("input", "size")),
                    "input.size",
                    f"size must be a positive int or [height, width] (got {size})",
                )
                return Image(spec.channels, 1, 1)
            return Image(spec.channels, size[0], size[1])
        if size <= 0:
            self.fail(
                self.marks.at(("input", "size")),
                "input.size",
                f"size must be positive (got {size})",
            )
            return Image(spec.channels, 1, 1)
        return Image(spec.channels, size, size)

    def resolve_extra(self, image: TensorType) -> dict[str, TensorType]:
        """The spec's extra inputs (``input.extra``), typed against the image they go with."""
        raw = self.doc.input.get("extra") or {}
        if not isinstance(image, Image) or not isinstance(raw, dict):
            return {}
        out: dict[str, TensorType] = {}
        for name in raw:
            if not _ID.fullmatch(str(name)) or name == "input":
                self.fail(
                    self.marks.at(("input", "extra", name), key=True),
                    "input.extra",
                    f"extra input name {str(name)[:80]!r} must be a plain word other than 'input'",
                    "for example: pixel_mask",
                )
                continue
            out[str(name)] = Mask(image.height, image.width)
        return out

    def resolve_ids(self, spec: Any) -> TensorType:
        """An integer-id input; its grid (rows x cols = ids) says which image it reads."""
        assert spec.ids is not None and spec.vocab is not None
        if spec.ids > MAX_INPUT_SIDE**2 or spec.vocab > MAX_INPUT_SIDE**2:
            self.fail(
                self.marks.at(("input",)),
                "input",
                f"input of {spec.ids:,} ids over {spec.vocab:,} is larger than "
                f"{MAX_INPUT_SIDE**2:,}",
            )
            return Ids(1, 1)
        grid = spec.grid
        if grid is None:
            side = math.isqrt(spec.ids)
            return Ids(spec.ids, spec.vocab, (side, side) if side * side == spec.ids else None)
        if len(grid) != 2 or grid[0] * grid[1] != spec.ids:
            self.fail(
                self.marks.at(("input", "grid")),
                "input.grid",
                f"grid {grid} does not hold {spec.ids} ids",
                f"give [rows, cols] with rows * cols = {spec.ids}",
            )
            return Ids(spec.ids, spec.vocab)
        return Ids(spec.ids, spec.vocab, (grid[0], grid[1]))

    # -- graph entries ------------------------------------------------------------------

    def expand_list(
        self,
        entries: list[Any],
        variables: dict[str, Any],
        prefix: str,
        previous: str,
        scope: dict[str, str],
        ctx: _Context,
    ) -> str:
        """Expand graph entries; return the id of the last one's output."""
        for position, entry in enumerate(entries):
            path = ctx.path + (position,)
            where = ctx.where or self.marks.at(path)
            if not isinstance(entry, dict):
                self.fail(
                    where,
                    ctx.label(position),
                    "a graph entry must be a mapping with 'id' and 'kind'",
                )
                continue
            unknown_reserved = [k for k in ("id", "kind") if k not in entry]
            if unknown_reserved:
                self.fail(
                    where,
                    ctx.label(position),
                    f"graph entry needs {' and '.join(repr(k) for k in unknown_reserved)}",
                )
                continue
            local_id = str(entry["id"])
            # ids become submodule names and torch.fx writes those into the forward's
            # source (``getattr(self, "<id>")`` when not an identifier): a quote in an id
            # would be code, so ids are plain words
            if not _ID.fullmatch(local_id):
                self.fail(
                    ctx.where or self.marks.at(path + ("id",)),
                    ctx.label(position),
                    f"id {local_id[:80]!r} must be a non-empty name of letters, digits, "
                    "'_' and '-'",
                    "for example: blocks, embed, head_dist",
                )
                previous = f"{prefix}graph[{position}]"  # its users are not reported again
                self.failed.add(previous)
                continue
            full_id = f"{prefix}{local_id}"
            if local_id in scope or full_id in self.aliases or full_id in self.groups:
                self.fail(
                    ctx.where or self.marks.at(path + ("id",)),
                    full_id,
                    f"id '{local_id}' is used twice",
                    "every node id must be unique",
                )
                continue
            previous = self.expand_entry(entry, full_id, variables, previous, scope, ctx, path)
            scope[local_id] = previous
            if len(self.nodes) > MAX_NODES:
                raise SpecError(
                    self.problems
                    + [Problem(where, full_id, f"the graph expands to more than {MAX_NODES} nodes")]
                )
        return previous

    def expand_entry(
        self,
        entry: dict[str, Any],
        full_id: str,
        variables: dict[str, Any],
        previous: str,
        scope: dict[str, str],
        ctx: _Context,
        path: YPath,
    ) -> str:
        top_level = ctx.depth == 0
        overrides = self.node_overrides.pop(full_id, {}) if top_level else {}
        repeat_raw = overrides.pop("repeat", entry.get("repeat"))
        if repeat_raw is None:
            return self.expand_one(
                entry, full_id, variables, previous, scope, ctx, path, overrides, None
            )
        try:
            count = substitute(repeat_raw, variables)
        except ExpressionError as exc:
            self.fail(ctx.where or self.marks.at(path + ("repeat",)), f"{full_id}.repeat", str(exc))
            return previous
        if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= MAX_REPEAT:
            self.fail(
                ctx.where or self.marks.at(path + ("repeat",)),
                f"{full_id}.repeat",
                f"repeat must be an integer from 1 to {MAX_REPEAT} (got {count!r})",
            )
            return previous
        per_index = entry.get("at") or {}
        if not isinstance(per_index, dict):
            self.fail(
                ctx.where or self.marks.at(path + ("at",)),
                f"{full_id}.at",
                "'at' maps repeat indices to the params they change",
            )
            per_index = {}
        for key in per_index:
            if not isinstance(key, int) or not -count <= key < count:
                self.fail(
                    ctx.where or self.marks.at(path + ("at", key), key=True),
                    f"{full_id}.at",
                    f"index {key!r} is outside the {count} repeats",
                )
        self.groups[full_id] = (str(entry.get("kind")), count)
        for i in range(count):
            changes = dict(per_index.get(i, {}) or per_index.get(i - count, {}) or {})
            variables_i = {**variables, "i": i, "count": count}
            previous = self.expand_one(
                {**entry, **changes},
                f"{full_id}.{i}",
                variables_i,
                previous,
                scope,
                ctx,
                path,
                overrides,
                i,
                group=full_id,
                changed=set(changes),
            )
        self.aliases[full_id] = previous
        for name, node_id in self.outputs_of.get(f"{full_id}.{count - 1}", {}).items():
            self.aliases.setdefault(f"{full_id}.{name}", node_id)  # ``blocks.small``
        return previous

    def expand_one(
        self,
        entry: dict[str, Any],
        full_id: str,
        variables: dict[str, Any],
        previous: str,
        scope: dict[str, str],
        ctx: _Context,
        path: YPath,
        overrides: dict[str, Any],
        index: int | None,
        group: str | None = None,
        changed: set[str] | frozenset[str] = frozenset(),
    ) -> str:
        where = ctx.where or self.marks.at(path + ("kind",))
        kind = entry["kind"]
        try:
            kind = substitute(kind, variables)
        except ExpressionError as exc:
            self.fail(where, f"{full_id}.kind", str(exc))
            return full_id
        overrides = dict(overrides)
        node_keys: dict[str, Any] = {
            k: overrides.pop(k) for k in ("when", "stochastic_depth") if k in overrides
        }
        raw_params = {k: v for k, v in entry.items() if k not in NODE_KEYS}
        raw_params.update(overrides)
        field_marks: dict[str, Location] = {}
        params: dict[str, Any] = {}
        for key, value in raw_params.items():
            mark = (
                Location(OVERRIDE_FILE)
                if key in overrides
                else self.marks.at(path + ("at", index, key))
                if key in changed
                else self.marks.at(path + (key,))
            )
            if ctx.where is not None:
                mark = (
                    ctx.param_marks.get(str(value)[1:], ctx.where)
                    if (isinstance(value, str) and value.startswith("$") and "{" not in value)
                    else ctx.where
                )
            field_marks[key] = mark
            try:
                params[key] = self.evaluate(value, variables)
            except ExpressionError as exc:
                self.fail(mark, f"{full_id}.{key}", str(exc))
        failed = len(params) < len(raw_params)
        if ctx.depth > 0:
            # inside a composite, a param that evaluates to null means "the kind's default",
            # so one composite can pass a param (window, sr_ratio) that only some of the
            # kinds it may hold accept
            params = {k: v for k, v in params.items() if v is not None}
        if failed:
            self.failed.add(full_id)
            return full_id
        keys = {k: node_keys.get(k, entry.get(k)) for k in ("when", "stochastic_depth")}
        marks = {k: self.key_mark(k, node_keys, changed, ctx, path, index, keys[k]) for k in keys}
        when = self.switch(keys["when"], variables, marks["when"], full_id)
        if when is None:
            self.failed.add(full_id)
            return full_id
        kind = str(kind)
        chained = self.chained_inputs(entry, kind, group, index, changed)
        inputs = chained or self.resolve_inputs(
            entry, full_id, variables, previous, scope, ctx, path, index, changed
        )
        if inputs is None:
            return full_id
        if kind in self.registry.aliases:  # a deprecated name: say what replaces it
            alias = self.registry.aliases[kind]
            warnings.warn(
                f"{where}: {full_id}: kind '{kind}' is deprecated: use '{alias.kind}'"
                + (f" ({alias.note})" if alias.note else ""),
                SpecDeprecation,
                stacklevel=2,
            )
            if alias.translate is not None:
                params = alias.translate(params)
            kind = alias.kind
        segment = _segment(full_id[len(ctx.prefix) :], index)
        model = (
            self.registry.primitives[kind]
            if kind in self.registry.primitives
            else self.registry.composites[kind].params
            if kind in self.registry.composites
            else None
        )
        chooser = param_ref(entry["kind"]) if ctx.depth > 0 else None
        if model is not None and chooser in ctx.params:
            fitted = self.fit(kind, model, params, entry, chooser, full_id, inputs, ctx)
            if fitted is None:
                self.failed.add(full_id)
                return full_id
            params = fitted
            self.chosen[full_id] = f"{ctx.composite_kind}'s {chooser}"
        if model is not None and not when:  # switched off: a pass-through of its input
            try:
                model.model_validate({"kind": kind, **params})
            except ValidationError as exc:
                composite = kind in self.registry.composites
                self.problems += pydantic_problems(
                    exc, self.marks, path, model, field_marks, where, full_id, composite
                )
                self.failed.add(full_id)
                return full_id
            self.aliases[full_id] = inputs[0]
            self.off[full_id] = kind
            return inputs[0]
        layer = self.layer_of(keys["stochastic_depth"], variables, marks, full_id, ctx)
        # an entry of the spec that writes its own rates keeps them (its layers still count)
        keep = ctx.keep or (
            model is not None
            and ctx.depth == 0
            and bool(set(raw_params) & set(stochastic_depth_fields(model)))
        )
        if kind in self.registry.primitives:
            block_cls = self.registry.primitives[kind]
            try:
                block = block_cls.model_validate({"kind": kind, **params})
            except ValidationError as exc:
                self.problems += pydantic_problems(
                    exc, self.marks, path, block_cls, field_marks, where, full_id
                )
                self.failed.add(full_id)
                return full_id
            if layer is not None or keep:
                self.depth[full_id] = (layer, keep)
            self.nodes.append(
                Node(
                    full_id,
                    kind,
                    block,
                    inputs,
                    where,
                    field_marks,
                    group=group,
                    index=index,
                    parent=ctx.parent,
                    composite_kind=ctx.composite_kind,
                    path=(*ctx.segments, segment),
                )
            )
            return full_id
        if kind in self.registry.composites:
            return self.expand_composite(
                self.registry.composites[kind],
                params,
                full_id,
                inputs,
                where,
                field_marks,
                ctx,
                path,
                group,
                index,
                segment,
                layer,
                keep,
                ctx.written(raw_params),
            )
        self.failed.add(full_id)
        self.fail(
            where if ctx.where else self.marks.at(path + ("kind",)),
            f"{full_id}.kind",
            f"unknown block kind '{kind}'{did_you_mean(kind, self.registry.kinds())}",
            "run `vitgraph list blocks` to see every kind",
        )
        return full_id

    def fit(
        self,
        kind: str,
        model: Any,
        params: dict[str, Any],
        entry: dict[str, Any],
        chooser: str,
        full_id: str,
        inputs: list[str],
        ctx: _Context,
    ) -> dict[str, Any] | None:
        """The params of an inner entry whose kind a composite param chooses
        (``kind: $attention``), fitted to the chosen kind: a param the user left at its
        default reaches only the kinds that take it; one the user set, or one the kind
        needs and does not get, is a problem that names the composite's param to change
        (None: reported)."""
        composite = ctx.composite_kind or "the composite"
        fields = set(model.model_fields) - {"kind"}
        choice_mark = ctx.param_marks.get(chooser, ctx.where or Location(self.source.file))
        needed = [
            name
            for name, info in model.model_fields.items()
            if name != "kind" and info.is_required() and name not in params
        ]
        for name in needed:
            source = param_ref(entry.get(name))
            if source is None or source not in ctx.params:
                others = hosts(kind, but=ctx.composite_kind)
                self.fail(
                    choice_mark,
                    f"{ctx.parent}.{chooser}",
                    f"{composite} cannot hold {kind} as its {chooser}: {kind} needs "
                    f"{name}, which {composite} does not pass",
                    f"{kind} is held by {', '.join(others)}"
                    if others
                    else f"write {kind} as an entry of its own",
                )
            else:
                self.fail(
                    choice_mark,
                    f"{ctx.parent}.{source}",
                    f"{kind} needs {name}: set {composite}'s {source}",
                    self.param_doc(ctx.composite_kind, source),
                )
            return None
        arity = getattr(model, "arity", None)
        if arity is not None and arity != len(inputs):
            others = hosts(kind, but=ctx.composite_kind)
            self.fail(
                choice_mark,
                f"{ctx.parent}.{chooser}",
                f"{composite} cannot hold {kind} as its {chooser}: {kind} takes {arity} "
                f"input(s), {composite} gives it {len(inputs)}",
                f"{kind} is held by {', '.join(others)}" if others else None,
            )
            return None
        fitted = {}
        for name, value in params.items():
            source = param_ref(entry.get(name))
            if name in fields or source is None or source not in ctx.params:
                fitted[name] = value  # the kind takes it, or the composite fixes it
            elif source in ctx.explicit:
                role = getattr(model, "role", None)  # a composite's params have none
                takers = (
                    [
                        k
                        for k, cls in sorted(self.registry.primitives.items())
                        if cls.role == role and name in cls.model_fields
                    ]
                    if role is not None
                    else [
                        k
                        for k, comp in sorted(self.registry.composites.items())
                        if name in comp.params.model_fields and k != ctx.composite_kind
                    ]
                )
                self.fail(
                    ctx.param_marks.get(source, choice_mark),
                    f"{ctx.parent}.{source}",
                    f"{composite}'s {source} does not reach its {chooser} {kind}, "
                    f"which takes no {name}",
                    f"leave {source} out, or choose another {chooser} that takes it: "
                    + ", ".join(takers[:8])
                    if takers
                    else f"leave {source} out: no {role or 'such'} kind takes {name}",
                )
                return None
        return fitted

    def param_doc(self, composite: str | None, param: str) -> str | None:
        comp = self.registry.composites.get(composite or "")
        info = comp.params.model_fields.get(param) if comp is not None else None
        return f"{param}: {info.description}" if info is not None and info.description else None

    def key_mark(
        self,
        key: str,
        overridden: dict[str, Any],
        changed: set[str] | frozenset[str],
        ctx: _Context,
        path: YPath,
        index: int | None,
        value: Any,
    ) -> Location:
        """Where an entry writes a reserved key (``when``, ``stochastic_depth``)."""
        if key in overridden:
            return Location(OVERRIDE_FILE)
        if ctx.where is not None:  # inside a composite: the caller's entry (or its param)
            if isinstance(value, str) and value.startswith("$") and "{" not in value:
                return ctx.param_marks.get(value[1:], ctx.where)
            return ctx.where
        return self.marks.at(path + (("at", index, key) if key in changed else (key,)))

    def switch(
        self, value: Any, variables: dict[str, Any], where: Location, full_id: str
    ) -> bool | None:
        """An entry's ``when``: whether the node is on (None: a problem, reported)."""
        if value is None:
            return True
        try:
            on = self.evaluate(value, variables)
        except ExpressionError as exc:
            self.fail(where, f"{full_id}.when", str(exc))
            return None
        if not isinstance(on, bool):
            self.fail_once(
                where,
                f"{full_id}.when",
                f"when must be true or false (got {on!r})",
                "write a condition: when: $distilled, or when: ${depth > 12}",
            )
            return None
        return on

    def layer_of(
        self,
        value: Any,
        variables: dict[str, Any],
        marks: dict[str, Location],
        full_id: str,
        ctx: _Context,
    ) -> _Layer | None:
        """An entry's place in the stochastic-depth schedule (``stochastic_depth:``):
        False (left out), a row of the enclosing composite instance, or None (each layer
        inside it counted on its own). An enclosing entry's decision holds inside it."""
        if value is None or value is True:
            return ctx.layer
        try:
            value = self.evaluate(value, variables)
        except ExpressionError as exc:
            self.fail(marks["stochastic_depth"], f"{full_id}.stochastic_depth", str(exc))
            return ctx.layer
        row = value.get("layer") if isinstance(value, dict) and set(value) == {"layer"} else None
        if value is False:
            decided: _Layer | None = False
        elif isinstance(row, int) and not isinstance(row, bool) and row >= 0:
            decided = ("row", ctx.parent or "", row)
        elif value is True:
            decided = None
        else:
            self.fail_once(
                marks["stochastic_depth"],
                f"{full_id}.stochastic_depth",
                f"an entry's stochastic_depth is false or {{layer: <row>}} (got {value!r})",
                "false keeps the rates the entry writes; {layer: $i} shares row i of the "
                "schedule with the composite's other entries of that row",
            )
            return ctx.layer
        return ctx.layer if ctx.layer is not None else decided

    def chained_inputs(
        self,
        entry: dict[str, Any],
        kind: str,
        group: str | None,
        index: int | None,
        changed: set[str] | frozenset[str],
    ) -> list[str] | None:
        """A later repeat of a chaining composite takes the previous repeat's outputs of
        its inputs' names, unless the entry gives its inputs per index (``at:``, or
        ``inputs:`` that read ``i`` or ``$prev``: the form written before chaining)."""
        if group is None or not index or "inputs" in changed:
            return None
        if kind in self.registry.aliases:
            kind = self.registry.aliases[kind].kind
        composite = self.registry.composites.get(kind)
        if composite is None or not composite.chains:
            return None
        raw = entry.get("inputs")
        items = raw if isinstance(raw, list) else [raw]
        if any(names_in(item) & {"i", "prev", "count"} for item in items):
            return None
        before = f"{group}.{index - 1}"
        outputs = self.outputs_of.get(before)
        if outputs is None:  # the repeat before failed: its problem is reported
            return [before] * len(composite.inputs)
        return [outputs[name] for name in composite.inputs]

    def schedule(self, args: dict[str, Any]) -> None:
        """The spec's ``stochastic_depth:`` rule: every drop-path rate of layer k of L
        (in graph order) becomes ``rate * k / (L - 1)`` (timm's linspace(0, rate, L))."""
        spec = self.doc.stochastic_depth
        if spec is None:
            return
        where = self.marks.at(("stochastic_depth", "rate"))
        try:
            rate = substitute(spec.rate, args)
        except ExpressionError as exc:
            self.fail(where, "stochastic_depth.rate", str(exc))
            return
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
            self.fail(
                where,
                "stochastic_depth.rate",
                f"the stochastic-depth rate must be a number in [0, 1) (got {rate!r})",
                "the last layer's drop-path rate, e.g. rate: 0.1 or rate: $drop_path_rate",
            )
            return
        layers: dict[Any, int] = {}
        targets = []
        for node in self.nodes:
            fields = stochastic_depth_fields(type(node.params))
            layer, keep = self.depth.get(node.id, (None, False))
            if not fields or layer is False:
                continue
            units = node.units()
            key = layer if layer is not None else ("unit", units[0] if units else node.id)
            k = layers.setdefault(key, len(layers))
            if not keep:
                targets.append((node, fields, k))
        last = max(len(layers) - 1, 1)
        for node, fields, k in targets:
            node.params = node.params.model_copy(update={f: rate * k / last for f in fields})
            node.field_marks.update({f: where for f in fields})

    def resolve_inputs(
        self, entry, full_id, variables, previous, scope, ctx, path, index, changed
    ) -> list[str] | None:
        raw = entry.get("inputs")
        if raw is None:
            return [previous]
        mark = ctx.where or self.marks.at(
            path + (("at", index, "inputs") if "inputs" in changed else ("inputs",))
        )
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            self.fail(mark, f"{full_id}.inputs", "inputs must be a node id or a list of them")
            return None
        resolved = []
        for name in raw:
            try:
                value = substitute(name, {**variables, "prev": previous})
            except ExpressionError as exc:
                self.fail(mark, f"{full_id}.inputs", str(exc))
                return None
            if value is None:  # an optional input switched off: "${'input1' if c else None}"
                continue
            name = str(value)
            group = ctx.prefix + name[:-2] if name.endswith(".*") else None
            if group is not None and group in self.groups:  # every member: ``decoder.*``
                count = self.groups[group][1]
                resolved += [self.aliases.get(f"{group}.{k}", f"{group}.{k}") for k in range(count)]
                continue
            resolved.append(scope.get(name, ctx.resolve_global(name, self.aliases)))
        if not resolved:
            self.fail(mark, f"{full_id}.inputs", "every input evaluates to null")
            return None
        return resolved

    def expand_composite(
        self,
        composite: Composite,
        params: dict[str, Any],
        full_id: str,
        inputs: list[str],
        where: Location,
        field_marks: dict[str, Location],
        ctx: _Context,
        path: YPath,
        group: str | None,
        index: int | None,
        segment: Segment,
        layer: _Layer | None = None,
        keep: bool = False,
        written: frozenset[str] = frozenset(),
    ) -> str:
        if composite.kind in ctx.stack:
            chain = " -> ".join([*ctx.stack, composite.kind])
            self.fail(where, full_id, f"composite block includes itself: {chain}")
            self.failed.add(full_id)  # its users are not reported again
            return full_id
        if ctx.depth >= MAX_COMPOSITE_DEPTH:
            self.fail(where, full_id, f"composite blocks nest deeper than {MAX_COMPOSITE_DEPTH}")
            self.failed.add(full_id)
            return full_id
        try:
            validated = composite.params.model_validate({"kind": composite.kind, **params})
        except ValidationError as exc:
            self.problems += pydantic_problems(
                exc, self.marks, path, composite.params, field_marks, where, full_id, True
            )
            self.failed.add(full_id)
            return full_id
        self.instances[full_id] = composite.kind
        variables = validated.model_dump(exclude={"kind"})
        declared = frozenset(variables)
        scope: dict[str, str] = {"input": inputs[0]}
        for k, name in enumerate(inputs):
            scope[f"input{k}"] = name
        inner = _Context(
            path=("<composite>",),
            where=where,
            param_marks=field_marks,
            depth=ctx.depth + 1,
            stack=(*ctx.stack, composite.kind),
            parent=full_id,
            composite_kind=composite.kind,
            prefix=f"{full_id}.",
            segments=(*ctx.segments, segment),
            layer=layer,
            keep=keep,
            params=declared,
            explicit=written & declared,
        )
        last = self.expand_list(composite.graph, variables, f"{full_id}.", inputs[0], scope, inner)
        main = composite.output
        output = scope.get(main, last) if main else last
        self.aliases[full_id] = output
        named = {name: scope.get(inner, inner) for name, inner in composite.outputs.items()}
        self.outputs_of[full_id] = named
        for name, node_id in named.items():
            if f"{full_id}.{name}" != node_id:  # ``blocks.3.tokens`` -> its inner node
                self.aliases[f"{full_id}.{name}"] = node_id
        if group is None:
            self.groups.setdefault(full_id, (composite.kind, 1))
        return output


#: a node's place in the stochastic-depth schedule: False (left out, its own rates) or a
#: row of a composite instance, ("row", instance id, row)
_Layer = tuple[str, str, int] | bool


@dataclass
class _Context:
    """Where an entry list sits: the spec itself, or inside a composite block."""

    path: YPath
    where: Location | None = None  # inside a composite: the caller's location
    param_marks: dict[str, Location] = field(default_factory=dict)
    depth: int = 0
    stack: tuple[str, ...] = ()
    parent: str | None = None
    composite_kind: str | None = None
    prefix: str = ""
    segments: tuple[Segment, ...] = ()
    #: the place in the stochastic-depth schedule that an enclosing entry decided for
    #: everything inside it (None: each layer is counted on its own)
    layer: _Layer | None = None
    #: inside a spec entry that writes its own stochastic-depth rates (kept as written)
    keep: bool = False
    #: inside a composite: its params, and those the user set (not left at a default)
    params: frozenset[str] = frozenset()
    explicit: frozenset[str] = frozenset()

    def written(self, raw: dict[str, Any]) -> frozenset[str]:
        """The keys of an entry the user set: at the top level every key written; inside a
        composite, a key its author fixed or one reading a param the user set."""
        if self.depth == 0:
            return frozenset(raw)
        return frozenset(
            k for k, v in raw.items() if (ref := param_ref(v)) is None or ref in self.explicit
        )

    def label(self, position: int) -> str:
        return f"{self.prefix}graph[{position}]" if self.prefix else f"graph[{position}]"

    def resolve_global(self, name: str, aliases: dict[str, str]) -> str:
        return aliases.get(name, name)


def param_ref(value: Any) -> str | None:
    """The name a bare ``$name`` reference reads (None for anything else)."""
    match = _REF.fullmatch(value) if isinstance(value, str) else None
    return match.group(1) if match else None


_REF = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)")


def hosts(kind: str, but: str | None = None) -> list[str]:
    """The composites written for ``kind`` (``but``: leave that one out): those that hold
    it by name or by a kind param's default; failing those, the ones that choose their
    kind with a param and pass every param ``kind`` requires."""
    reg = registry()
    required = {n for n, f in (_model(kind) or Block).model_fields.items() if f.is_required()}
    by_name, choosing = [], []
    for name, composite in sorted(reg.composites.items()):
        fields = composite.params.model_fields
        for entry in composite.graph:
            written = entry.get("kind") if isinstance(entry, dict) else None
            chooser = param_ref(written)
            info = fields.get(chooser or "")
            if written == kind or (info is not None and info.default == kind):
                by_name.append(name)
                break
            if info is not None and required - {"kind"} <= set(entry) - set(NODE_KEYS):
                choosing.append(name)
                break
    return [n for n in (by_name or choosing) if n != but]


def _model(kind: str) -> Any:
    reg = registry()
    if kind in reg.primitives:
        return reg.primitives[kind]
    return reg.composites[kind].params if kind in reg.composites else None


def _segment(local_id: str, index: int | None) -> Segment:
    """The hierarchy level of an entry's id (``blocks.3`` of a repeat -> (blocks, 3))."""
    if index is None:
        return Segment(local_id)
    return Segment(local_id.rsplit(".", 1)[0], index)


def expand(
    source: Source, variant: str | None = None, overrides: dict[str, Any] | None = None
) -> tuple[str | None, Expanded]:
    """Phase 3: evaluate args and expressions, validate every entry, inline composites."""
    doc = source.document
    if variant is None:
        variant = (
            doc.default
            if doc.default is not None
            else (next(iter(doc.variants)) if doc.variants else None)
        )
    if variant is not None and variant not in doc.variants:
        where = source.marks.at(("variants",), key=True) if doc.variants else source.marks.at(())
        raise SpecError.at(
            where,
            "variants",
            f"unknown variant '{variant}'{did_you_mean(variant, doc.variants)}",
            f"variants of {doc.name}: {', '.join(doc.variants) or 'none'}",
        )
    expander = _Expander(source, variant, dict(overrides or {}))
    args = expander.resolve_args()
    input_type = expander.resolve_input(args)
    extra_inputs = expander.resolve_extra(input_type)
    if expander.problems:
        raise SpecError(expander.problems)
    if not doc.graph:
        raise SpecError.at(
            source.marks.at(("graph",)),
            "graph",
            "the graph has no nodes",
            "list the model's blocks under graph:",
        )
    init = expander.resolve_init()
    scope: dict[str, str] = {}
    last = expander.expand_list(doc.graph, args, "", "input", scope, _Context(path=("graph",)))
    expander.schedule(args)
    for node_id in expander.node_overrides:
        expander.fail(
            Location(OVERRIDE_FILE),
            node_id,
            f"override names node '{node_id}' which is not in the graph",
        )
    outputs = [expander.aliases.get(o, o) for o in (doc.outputs or [last])]
    features = list(doc.features or [])
    unique: dict[tuple[Location, str], Problem] = {}
    for problem in expander.problems:  # a mistake in a repeated entry is reported once
        unique.setdefault((problem.location, problem.message), problem)
    tap_marks: dict[str, tuple[Location, str]] = {}
    for key in ("outputs", "features"):
        for k, name in enumerate(getattr(doc, key) or []):
            tap_marks.setdefault(name, (source.marks.at((key, k)), key))
    return variant, Expanded(
        expander.nodes,
        expander.aliases,
        input_type,
        args,
        outputs,
        features,
        expander.groups,
        list(unique.values()),
        expander.failed,
        tap_marks,
        expander.instances,
        init,
        expander.chosen,
        expander.off,
        extra_inputs,
    )
