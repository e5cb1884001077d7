"""``Graph``: a validated spec (every node typed), ready to build or summarise.

``vitgraph.load`` runs phases 1-5; nothing is allocated until ``build``. Each ``build``
returns a fresh module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import torch

from vitgraph.compiler import VitgraphModel, build_on, compile_nodes
from vitgraph.errors import SpecError
from vitgraph.infer import Inferred, infer
from vitgraph.loader import Expanded, Node, Source, expand, load_source, resolve_spec
from vitgraph.shapes import TensorType

#: a spec whose parameter count exceeds this is refused unless ``allow_large``
MAX_PARAMS = 2_000_000_000


class Graph:
    """A validated, shape-inferred spec. Build it with :meth:`build`."""

    def __init__(
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

    # -- what the graph is --------------------------------------------------------------

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
    def outputs(self) -> list[str]:
        return list(self._expanded.outputs)

    @property
    def features(self) -> list[str]:
        return list(self._expanded.features)

    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each feature tap (``features:`` in the spec) and its output shape without the
        batch dim, in the spec's order: what a dense-prediction neck receives."""
        return {name: self.type_of(name).shape for name in self.features}

    def type_of(self, node_id: str) -> TensorType:
        """The inferred output type of a node (or composite / repeat group)."""
        node_id = self._expanded.aliases.get(node_id, node_id)
        return self._inferred.types[node_id]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._inferred.types["input"].shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.type_of(self.outputs[0]).shape

    def node(self, node_id: str) -> Node:
        for node in self._inferred.order:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    # -- building -----------------------------------------------------------------------

    def build(
        self,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        *,
        allow_large: bool = False,
        features: bool = False,
        weights_from: torch.nn.Module | None = None,
        weights: str | Path | None = None,
    ) -> VitgraphModel:
        """A fresh ``nn.Module`` computing this graph (``device="meta"``: no allocation),
        initialised as timm does (``vitgraph.init``).

        ``features=True`` returns the feature taps instead of the outputs (a tuple in the
        order of :meth:`feature_shapes`), for use as a dense-prediction backbone.
        ``weights_from``: a model built from an earlier version of this graph; every weight
        whose node (id and kind) and shape are unchanged is copied, and
        ``model.vitgraph_carry.reinitialized`` lists the rest.
        ``weights``: a safetensors file (``save_weights``, ``vitgraph build --out``) whose
        keys and shapes must all fit this graph (every mismatch is listed in a
        ``WeightsError``); loaded tensor by tensor into the fresh model.
        ``allow_large``: build beyond ``MAX_PARAMS`` parameters (counted before anything
        is allocated; a meta build is never refused)."""
        from vitgraph.init import initialize

        if not allow_large and str(device) != "meta":
            self.check_size()
        if weights is not None:  # an unreadable file is refused before anything is built
            from vitgraph.weights import read_header

            read_header(weights)
        if features and not self.features:
            raise SpecError.at(
                self.source.marks.at(()),
                self.name,
                "the spec names no features to return",
                "add `features: [node, ...]` to the spec",
            )
        outputs = self._expanded.features if features else self._expanded.outputs
        order = self._inferred.order
        if features:  # only what the taps need: the head is left out
            needed = set()
            for name in outputs:
                target = self._expanded.aliases.get(name, name)
                needed |= nx.ancestors(self._inferred.graph, target) | {target}
            order = [node for node in order if node.id in needed]

        def make() -> VitgraphModel:
            made = compile_nodes(order, self._inferred.types, outputs, self._expanded.aliases)
            initialize(made, order, self.source.document.init)
            return made

        model = build_on(device, dtype, make)
        model.spec_name = self.name
        model.variant = self.variant
        model.vitgraph_graph = self  # type: ignore[assignment]
        if weights is not None:
            from vitgraph.weights import load_into

            load_into(
                model, weights, f"{self.name} / {self.variant}" if self.variant else self.name
            )
        if weights_from is not None:
            from vitgraph.checkpoints import carry_weights

            model.vitgraph_carry = carry_weights(model, weights_from)  # type: ignore[assignment]
        return model

    def check_size(self, limit: int | None = None) -> None:
        """Refuse a graph with more than ``limit`` (default ``MAX_PARAMS``) parameters,
        counted by the summary on the meta device, so before anything is allocated."""
        limit = MAX_PARAMS if limit is None else limit
        params = self.summary().params
        if params > limit:
            where = self.source.marks.at(("graph",))
            raise SpecError.at(
                where,
                self.variant or self.name,
                f"the model would have {params:,} parameters, more than the limit of {limit:,}",
                "pass allow_large=True (CLI: --allow-large) if you really mean it",
            )

    def summary(self, batch: int = 1):
        """Params, MACs and per-node rows, counted on the meta device (nothing allocated)."""
        from vitgraph.summary import summarize

        if getattr(self, "_summary", None) is None or batch != 1:
            result = summarize(self, batch)
            if batch != 1:
                return result
            self._summary = result
        return self._summary

    # -- editing (vitgraph/edit.py): each verb re-validates and edits in place -----------

    def find(self, pattern: str | list[str] | None = None, **kwargs: Any) -> list[str]:
        """Ids matching an id pattern (``blocks.*.attn``), ``kind=`` and/or ``where=``."""
        from vitgraph import edit

        return edit.find(self, pattern, **kwargs)

    def replace(
        self, pattern: str | list[str] | None = None, with_kind: str | None = None, **kwargs: Any
    ) -> Graph:
        """Swap the kind of every match, keeping the params the new kind also has."""
        from vitgraph import edit

        return edit.replace(self, pattern, with_kind, **kwargs)

    def insert_after(self, target: str, node: dict[str, Any], **kwargs: Any) -> Graph:
        """Insert ``node`` after ``target``; the target's users take the new node."""
        from vitgraph import edit

        return edit.insert_after(self, target, node, **kwargs)

    def insert_before(self, target: str, node: dict[str, Any], **kwargs: Any) -> Graph:
        """Insert ``node`` between ``target`` and its single input."""
        from vitgraph import edit

        return edit.insert_before(self, target, node, **kwargs)

    def remove(self, target: str, **kwargs: Any) -> Graph:
        """Remove a single-input node; its users take its input."""
        from vitgraph import edit

        return edit.remove(self, target, **kwargs)

    def update(self, pattern: str | list[str] | None = None, **kwargs: Any) -> Graph:
        """Set params of every match: ``update("head", classes=10)``."""
        from vitgraph import edit

        return edit.update(self, pattern, **kwargs)

    def rename(self, old: str, new: str, **kwargs: Any) -> Graph:
        """Rename a top-level node or repeat group."""
        from vitgraph import edit

        return edit.rename(self, old, new, **kwargs)

    def to_yaml(self) -> str:
        """A spec that rebuilds this graph (``repeat:``, args and expressions kept)."""
        from vitgraph import edit

        return edit.to_yaml(self)

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_yaml` to ``path``."""
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

    def __repr__(self) -> str:
        variant = f" {self.variant}" if self.variant else ""
        return f"<Graph {self.name}{variant}: {len(self.nodes)} nodes, input {self.input_shape}>"


def load(
    spec: str | Path,
    variant: str | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    text: str | None = None,
) -> Graph:
    """Parse, validate, expand and shape-check a spec (a path, a shipped spec name or a
    variant name). Raises ``SpecError`` listing every problem, each at file:line:col."""
    if text is not None:
        path, implied = str(spec), None
    else:
        path, implied = resolve_spec(spec)
    if variant is None:
        variant = implied
    source = load_source(path, text)
    chosen, expanded = expand(source, variant, overrides)
    inferred = infer(expanded)
    return Graph(source, chosen, overrides or {}, expanded, inferred)


def build(
    spec: str | Path,
    variant: str | None = None,
    overrides: dict[str, Any] | None = None,
    **kwargs: Any,
) -> VitgraphModel:
    """``load(spec, variant, overrides).build(**kwargs)``."""
    return load(spec, variant, overrides).build(**kwargs)
