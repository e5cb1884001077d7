"""The intermediate representation the phases hand each other, as typed data.

``Source`` (phases 1-2: a parsed, schema-checked spec file) -> ``Expanded`` (phase 3:
typed primitive nodes) -> ``Inferred`` (phases 4-5: execution order and every node's
tensor type) -> ``Validated`` (all of it, with the variant and overrides: what a
``Graph`` is and what every service on a built model reads). A node's place in the
hierarchy of repeat groups and composites is ``Node.path``, not a re-split id string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from vitgraph.block import Block
from vitgraph.errors import Location, Problem, UnknownNode
from vitgraph.shapes import TensorType, example
from vitgraph.spec.document import SpecDocument
from vitgraph.spec.parse import Marks
from vitgraph.suggest import did_you_mean

#: the id of the model's input in ``inputs`` lists and type tables
INPUT = "input"


@dataclass(frozen=True)
class Segment:
    """One level of a node id: an entry id and, for a repeat, the index (``blocks``, 3)."""

    id: str
    index: int | None = None

    def __str__(self) -> str:
        return self.id if self.index is None else f"{self.id}.{self.index}"


@dataclass
class Source:
    """A parsed spec file: its data, the marks of every value, and its file name."""

    data: dict[str, Any]
    marks: Marks
    file: str
    document: SpecDocument


@dataclass
class Node:
    """One primitive block in the expanded graph."""

    id: str
    kind: str
    params: Block
    inputs: list[str]
    where: Location
    field_marks: dict[str, Location] = field(default_factory=dict)
    group: str | None = None  # the repeat group it was expanded from ("blocks")
    index: int | None = None  # its index in that group
    parent: str | None = None  # the composite node it belongs to ("blocks.3")
    composite_kind: str | None = None  # the kind of that composite ("encoder_layer")
    #: the hierarchy of its id: (blocks, 3), (attn) for ``blocks.3.attn``
    path: tuple[Segment, ...] = ()

    def mark(self, field_name: str | None) -> Location:
        if field_name and field_name in self.field_marks:
            return self.field_marks[field_name]
        return self.where

    @property
    def top(self) -> str:
        """The top-level entry it belongs to (``blocks.3`` for ``blocks.3.attn``; its own
        id for a plain top-level node)."""
        return str(self.path[0]) if self.path else self.id

    def units(self) -> list[str]:
        """Ids of the repeat instances and composite nodes it lies in, innermost first."""
        out = []
        for depth in range(len(self.path) - 1, 0, -1):
            out.append(".".join(str(s) for s in self.path[:depth]))
        return out


@dataclass
class Expanded:
    """The result of the expand phase."""

    nodes: list[Node]
    #: composite / repeat-group id, a composite's named output (``blocks.small``) and a
    #: switched-off entry (``when: false``) -> the node id that computes it
    aliases: dict[str, str]
    #: what the model takes: an ``Image`` or integer ``Ids``
    input: TensorType
    args: dict[str, Any]
    outputs: list[str]
    features: list[str]
    groups: dict[str, tuple[str, int]]  # id -> (kind, count) of each repeat group / composite
    problems: list[Problem] = field(default_factory=list)  # found while expanding
    failed: set[str] = field(default_factory=set)  # ids whose entry had a problem
    #: where each name in ``outputs:`` / ``features:`` is written, as (location, key)
    tap_marks: dict[str, tuple[Location, str]] = field(default_factory=dict)
    #: every composite instance (``layers.2``, ``layers.2.blocks.0``) -> its kind
    instances: dict[str, str] = field(default_factory=dict)
    #: the spec's ``init:`` mapping (kind -> scheme), deprecated kind names resolved
    init: dict[str, str] = field(default_factory=dict)
    #: inner nodes whose kind a composite param chose -> that param ("encoder_layer's
    #: attention"), so a problem the choice causes downstream can say so
    chosen: dict[str, str] = field(default_factory=dict)
    #: entries switched off by ``when:`` -> their kind (each is an alias of its input)
    off: dict[str, str] = field(default_factory=dict)
    #: the spec's optional extra inputs (``input.extra``: a pixel mask) -> their types
    extra_inputs: dict[str, TensorType] = field(default_factory=dict)


@dataclass
class Inferred:
    """Phases 4-5: the nodes in execution order and every output type."""

    order: list[Node]
    types: dict[str, TensorType]  # node id (and "input") -> its output type
    graph: nx.DiGraph


class Validated:
    """A spec through phases 1-5: what it is, node by node, with every tensor type.

    Read-only queries; ``vitgraph.Graph`` adds building, counting and editing."""

    def __init__(
        self,
        source: Source,
        variant: str | None,
        overrides: dict[str, Any],
        expanded: Expanded,
        inferred: Inferred,
    ) -> None:
        self._adopt(source, variant, overrides, expanded, inferred)

    def _adopt(
        self,
        source: Source,
        variant: str | None,
        overrides: dict[str, Any],
        expanded: Expanded,
        inferred: Inferred,
    ) -> None:
        self.source = source
        self.variant = variant
        self.overrides = dict(overrides)
        self._expanded = expanded
        self._inferred = inferred

    @property
    def expanded(self) -> Expanded:
        return self._expanded

    @property
    def inferred(self) -> Inferred:
        return self._inferred

    @property
    def name(self) -> str:
        return self.source.document.name

    @property
    def file(self) -> str:
        return self.source.file

    @property
    def nodes(self) -> list[Node]:
        """Primitive nodes in execution order."""
        return list(self._inferred.order)

    @property
    def args(self) -> dict[str, Any]:
        return dict(self._expanded.args)

    @property
    def groups(self) -> dict[str, tuple[str, int]]:
        """Repeat groups and composite nodes: id -> (kind, count)."""
        return dict(self._expanded.groups)

    @property
    def instances(self) -> dict[str, str]:
        """Composite instances, nested ones included: id -> kind."""
        return dict(self._expanded.instances)

    @property
    def aliases(self) -> dict[str, str]:
        """Repeat groups and composite nodes: id -> the node id that is their output."""
        return dict(self._expanded.aliases)

    @property
    def outputs(self) -> list[str]:
        return list(self._expanded.outputs)

    @property
    def features(self) -> list[str]:
        return list(self._expanded.features)

    def resolve(self, node_id: str) -> str:
        """The primitive node that computes ``node_id`` (a group or composite's output)."""
        return self._expanded.aliases.get(node_id, node_id)

    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each feature tap (``features:`` in the spec) and its output shape without the
        batch dim, in the spec's order: what a dense-prediction neck receives."""
        return {name: self.type_of(name).shape for name in self.features}

    def type_of(self, node_id: str) -> TensorType:
        """The inferred output type of a node (or composite / repeat group)."""
        return self._inferred.types[self.resolve(node_id)]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._inferred.types[INPUT].shape

    @property
    def extra_inputs(self) -> dict[str, TensorType]:
        """The optional inputs the model takes by keyword (``input.extra``), by name."""
        return dict(self._expanded.extra_inputs)

    @property
    def input_type(self) -> TensorType:
        """What the model takes: an ``Image`` or integer ``Ids`` (``vitgraph.shapes``)."""
        return self._inferred.types[INPUT]

    def example_input(self, batch: int = 1, seed: int | None = None, **where: Any) -> Any:
        """A ``(batch, *input_shape)`` input the model accepts: N(0, 1) pixels, or ids drawn
        uniformly from the vocabulary (int64); ``seed`` makes it reproducible, ``where``
        (``device``, ``dtype``) places it."""
        import torch

        generator = None if seed is None else torch.Generator().manual_seed(seed)
        return example(self.input_type, batch, generator, **where)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.type_of(self.outputs[0]).shape

    @property
    def off(self) -> dict[str, str]:
        """Entries switched off by ``when:`` (not built: each passes its input on) -> kind."""
        return dict(self._expanded.off)

    def node(self, node_id: str) -> Node:
        """The primitive node ``node_id`` (``blocks.3.attn``); an unknown id is an
        ``UnknownNode`` error (a SpecError and a KeyError) with a did-you-mean."""
        for node in self._inferred.order:
            if node.id == node_id:
                return node
        ids = [n.id for n in self._inferred.order]
        if node_id in self._expanded.off:
            message = f"'{node_id}' is switched off by its when: (it passes its input on)"
        elif node_id in self._expanded.aliases:
            message = (
                f"'{node_id}' is a repeat group or composite block, not a primitive node; "
                f"its output is '{self.resolve(node_id)}'"
            )
        else:
            message = f"no node '{node_id}'{did_you_mean(node_id, ids)}"
        raise UnknownNode(
            Problem(
                Location(self.file),
                node_id,
                message,
                "ids look like 'head' or 'blocks.3.attn' (Graph.find lists them)",
            )
        )
