"""``Graph``: a validated spec (every node typed), ready to build, count or edit.

``vitgraph.load`` (``vitgraph.pipeline``) runs phases 1-5; nothing is allocated until
``build``. Each ``build`` returns a fresh module. The editing verbs (``update``,
``replace``, ...) transform the spec's source data (``vitgraph.spec.edits``) and the
graph re-validates itself through ``Graph.from_source``, the one path ``load``, every
edit and ``extends:`` share; an edit that fails leaves the graph unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from vitgraph.errors import SpecError
from vitgraph.inference import validate
from vitgraph.ir import Expanded, Inferred, Source, Validated
from vitgraph.spec import edits
from vitgraph.spec.serialize import to_yaml
from vitgraph.summary import Summary, summarize

if TYPE_CHECKING:  # building is imported by build(): validate needs none of it (#24)
    import torch

    from vitgraph.model.api import VitgraphModel

#: a spec whose parameter count exceeds this is refused unless ``allow_large``
MAX_PARAMS = 2_000_000_000


class Graph(Validated):
    """A validated, shape-inferred spec. Build it with :meth:`build`."""

    _summary: Summary | None = None
    #: the edits applied since ``load`` (``remove('head_dist')``, ...), in order
    edits: list[str] = []

    @classmethod
    def from_source(
        cls, source: Source, variant: str | None = None, overrides: dict[str, Any] | None = None
    ) -> Graph:
        """Validate ``source`` (phases 3-5) into a Graph."""
        state = validate(source, variant, overrides)
        return cls(*_fields(state))

    def _state(self) -> tuple[Source, str | None, dict[str, Any], Expanded, Inferred]:
        return _fields(self)

    def _edited(self, source: Source, label: str) -> Graph:
        """Take the edited ``source`` (validated with this graph's variant and overrides)
        as this graph's spec; raises, leaving the graph as it was, if it does not validate.
        ``label`` records the edit (``to_yaml`` names the derived spec by its edits)."""
        state = validate(source, self.variant, self.overrides)
        self._adopt(*_fields(state))
        self._summary = None
        self.edits = [*self.edits, label]
        return self

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
        optimize: bool = False,
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
        is allocated; a meta build is never refused).
        ``optimize``: then rewrite it for inference (``vitgraph.optimize``: eval only,
        BatchNorms and scales folded, tables precomputed)."""
        # the compiler (torch.fx, with torch._dynamo: seconds to import), init, the model
        # API and the weights loader are imported here, so validating pays none of them
        from vitgraph.compiler import build_on, compile_nodes
        from vitgraph.init import initialize
        from vitgraph.model.api import VitgraphModel
        from vitgraph.model.layout import api_problems
        from vitgraph.weights import carry_weights, load_weights, read_header

        if not allow_large and str(device) != "meta":
            self.check_size()
        if weights is not None:  # an unreadable file is refused before anything is built
            read_header(weights)
        if features and not self.features:
            raise SpecError.at(
                self.source.marks.at(()),
                self.name,
                "the spec names no features to return",
                "add `features: [node, ...]` to the spec",
            )
        if not features:  # what timm's model API could not split, before anything is built
            problems = api_problems(self)
            if problems:
                raise SpecError(problems)
        outputs = self.features if features else self.outputs
        order = self._inferred.order
        if features:  # only what the taps need: the head is left out
            needed = set()
            for name in outputs:
                target = self.resolve(name)
                needed |= nx.ancestors(self._inferred.graph, target) | {target}
            order = [node for node in order if node.id in needed]

        def make() -> VitgraphModel:
            made = compile_nodes(
                order,
                self._inferred.types,
                outputs,
                self._expanded.aliases,
                VitgraphModel,
                extra_inputs=list(self._expanded.extra_inputs),
            )
            initialize(made, order, self._expanded.init)
            return made

        model = build_on(device, dtype, make)
        model.spec_name = self.name
        model.variant = self.variant
        # a snapshot: editing this graph later does not change what the model is
        model.vitgraph_graph = Graph(*self._state())
        if weights is not None:
            label = f"{self.name} / {self.variant}" if self.variant else self.name
            load_weights(model, weights, adapt=False, spec=label)
        if weights_from is not None:
            model.vitgraph_carry = carry_weights(model, weights_from)
        if optimize:
            if str(device) == "meta":
                raise ValueError("optimize=True needs weights: build on a real device")
            from vitgraph.passes import optimize as optimize_model

            model = optimize_model(model)
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
        if getattr(self, "_summary", None) is None or batch != 1:
            result = summarize(self, batch)
            if batch != 1:
                return result
            self._summary = result
        return self._summary

    # -- editing: each verb transforms the source (vitgraph.spec.edits), then re-validates

    def find(self, pattern: str | list[str] | None = None, **kwargs: Any) -> list[str]:
        """Ids matching an id pattern (``blocks.*.attn``), ``kind=`` and/or ``where=``."""
        return edits.find(self, pattern, **kwargs)

    def replace(
        self, pattern: str | list[str] | None = None, with_kind: str | None = None, **kwargs: Any
    ) -> Graph:
        """Swap the kind of every match, keeping the params the new kind also has."""
        return self._edited(
            edits.replace(self, pattern, with_kind, **kwargs),
            _call("replace", pattern, with_kind=with_kind, **kwargs),
        )

    def insert_after(self, target: str, node: dict[str, Any], **kwargs: Any) -> Graph:
        """Insert ``node`` after ``target``; the target's users take the new node."""
        return self._edited(
            edits.insert_after(self, target, node, **kwargs), _call("insert_after", target, node)
        )

    def insert_before(self, target: str, node: dict[str, Any], **kwargs: Any) -> Graph:
        """Insert ``node`` between ``target`` and its single input."""
        return self._edited(
            edits.insert_before(self, target, node, **kwargs), _call("insert_before", target, node)
        )

    def remove(self, target: str, **kwargs: Any) -> Graph:
        """Remove a node, block or whole repeat group; its first input takes its place
        (in its users and, for the model's output, as the output)."""
        return self._edited(edits.remove(self, target, **kwargs), _call("remove", target))

    def update(self, pattern: str | list[str] | None = None, **kwargs: Any) -> Graph:
        """Set params of every match: ``update("head", classes=10)``."""
        return self._edited(
            edits.update(self, pattern, **kwargs), _call("update", pattern, **kwargs)
        )

    def rename(self, old: str, new: str, **kwargs: Any) -> Graph:
        """Rename a top-level node or repeat group."""
        return self._edited(edits.rename(self, old, new, **kwargs), _call("rename", old, new))

    def to_yaml(self, name: str | None = None) -> str:
        """A spec that rebuilds this graph (``repeat:``, args and expressions kept), with
        only the variants that still validate. An edited graph is a derived spec: it is
        named ``name`` (default ``<spec>_edited``) and says what it derives from."""
        derived = name or (f"{self.name}_edited" if self.edits else None)
        origin = None
        if self.edits:
            variant = f" ({self.variant})" if self.variant else ""
            origin = f"derived from {self.name}{variant} by: {'; '.join(self.edits)}"
        return to_yaml(self, name=derived, note=origin, validate=validate)

    def save(self, path: str | Path, name: str | None = None) -> None:
        """Write :meth:`to_yaml` to ``path``."""
        Path(path).write_text(self.to_yaml(name), encoding="utf-8")

    def __repr__(self) -> str:
        variant = f" {self.variant}" if self.variant else ""
        return f"<Graph {self.name}{variant}: {len(self.nodes)} nodes, input {self.input_shape}>"


def _call(verb: str, *args: Any, **kwargs: Any) -> str:
    """An edit as it was called: ``update('head', classes=10)``."""
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items() if k != "location"]
    return f"{verb}({', '.join(shown)})"


def _fields(state: Validated) -> tuple[Source, str | None, dict[str, Any], Expanded, Inferred]:
    return state.source, state.variant, state.overrides, state.expanded, state.inferred
