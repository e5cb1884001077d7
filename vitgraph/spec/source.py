"""Phases 1-2 for one file: read it, parse it (safe YAML with marks), resolve
``extends:`` + ``edits:``, and check its top-level keys against ``SpecDocument``."""

from __future__ import annotations

from pydantic import ValidationError

from vitgraph.errors import Location, SpecError
from vitgraph.ir import Source
from vitgraph.spec.document import FORMAT_VERSION, SpecDocument
from vitgraph.spec.extends import Validate, resolve_extends
from vitgraph.spec.parse import MAX_CHARS, parse_yaml
from vitgraph.spec.problems import pydantic_problems


def load_source(path: str, text: str | None = None, *, validate: Validate) -> Source:
    """Phase 1 and the top-level schema: parse a spec file and check its outer keys.

    ``validate`` runs phases 3-5 on a source (the orchestrator passes it down): the edits
    of a spec that extends another are each re-validated."""
    if text is None:
        try:  # bounded: parse_yaml refuses anything longer (and /dev/zero never ends)
            with open(path, encoding="utf-8") as handle:
                text = handle.read(MAX_CHARS + 1)
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError.at(Location(path), "", f"cannot read the spec: {exc}") from None
    data, marks = parse_yaml(text, path)
    if isinstance(data, dict) and "extends" in data:  # a spec written as edits of another
        data, marks = resolve_extends(data, marks, path, validate)
    if not isinstance(data, dict):
        raise SpecError.at(
            marks.at(()),
            "",
            "a spec must be a mapping with 'vitgraph', 'name', 'input' and 'graph' keys",
        )
    version = data.get("vitgraph")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise SpecError.at(
            marks.at(("vitgraph",)),
            "vitgraph",
            f"spec format version {version} is newer than this vitgraph reads ({FORMAT_VERSION})",
            "upgrade vitgraph to build this spec",
        )
    try:
        document = SpecDocument.model_validate(data)
    except ValidationError as exc:
        raise SpecError(pydantic_problems(exc, marks, (), SpecDocument)) from None
    if version != FORMAT_VERSION:
        raise SpecError.at(
            marks.at(("vitgraph",)),
            "vitgraph",
            f"unknown spec format version {version!r}",
            "write `vitgraph: 1`",
        )
    return Source(data, marks, path, document)
