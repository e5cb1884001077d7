"""The orchestrator: ``load`` runs phases 1-5 on what a user names, ``build`` adds phase 6.

``load`` resolves a spec name (a file, a shipped family, a variant), reads and parses the
file (resolving ``extends:`` + ``edits:`` with phases 3-5 passed down as ``validate``) and
validates it into a ``Graph``; nothing is allocated until ``Graph.build``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitgraph.graph import Graph
from vitgraph.inference import validate
from vitgraph.ir import Source, Validated
from vitgraph.spec.catalog import resolve_spec
from vitgraph.spec.source import load_source

if TYPE_CHECKING:
    from vitgraph.model.api import VitgraphModel


def _validate_default(source: Source) -> Validated:
    """Phases 3-5 with the spec's default variant and no overrides (an ``extends:`` base
    after each of its edits)."""
    return validate(source)


def read_source(spec: str | Path, text: str | None = None) -> tuple[Source, str | None]:
    """(the parsed, schema-checked source, the variant the name implies) of ``spec``: a
    path, a shipped spec name or a variant name (or any label with ``text``)."""
    if text is not None:
        path, implied = str(spec), None
    else:
        path, implied = resolve_spec(spec)
    return load_source(path, text, validate=_validate_default), implied


def load(
    spec: str | Path,
    variant: str | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    text: str | None = None,
) -> Graph:
    """Parse, validate, expand and shape-check a spec (a path, a shipped spec name, a
    variant name, or a weights file or checkpoint written by vitgraph: the spec, variant
    and overrides in its metadata; ``overrides`` add to its own). Raises ``SpecError``
    listing every problem, each at file:line:col."""
    if text is None and str(spec).endswith(".safetensors"):
        from vitgraph.weights.format import saved_spec  # the loader: only for a file

        label, saved, implied, held = saved_spec(spec)
        overrides = {**held, **(overrides or {})}
        source, _ = read_source(label, saved or None)
    else:
        source, implied = read_source(spec, text)
    return Graph.from_source(source, variant if variant is not None else implied, overrides)


def build(
    spec: str | Path,
    variant: str | None = None,
    overrides: dict[str, Any] | None = None,
    **kwargs: Any,
) -> VitgraphModel:
    """``load(spec, variant, overrides).build(**kwargs)``."""
    return load(spec, variant, overrides).build(**kwargs)
