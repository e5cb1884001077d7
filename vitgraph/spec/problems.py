"""Pydantic's validation errors as located problems (did-you-mean for unknown keys).

Used by the schema phase (the spec file's top level) and by the expand phase (each graph
entry against its block kind, each composite's params)."""

from __future__ import annotations

import typing

from pydantic import BaseModel, ValidationError

from vitgraph.errors import Location, Problem
from vitgraph.spec.parse import Marks
from vitgraph.spec.parse import Path as YPath
from vitgraph.suggest import did_you_mean


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The nested model an error's location points into (``stochastic_depth.rule`` ->
    the schedule's model), else ``model`` itself."""
    for step in loc:
        info = model.model_fields.get(str(step))
        inner = (
            next(
                (
                    t
                    for t in (info.annotation, *typing.get_args(info.annotation))
                    if isinstance(t, type) and issubclass(t, BaseModel)
                ),
                None,
            )
            if info is not None
            else None
        )
        if inner is None:
            return model
        model = inner
    return model


def pydantic_problems(
    exc: ValidationError,
    marks: Marks,
    base: YPath,
    model: type[BaseModel],
    field_marks: dict[str, Location] | None = None,
    where: Location | None = None,
    label: str = "",
    describe: bool = False,
) -> list[Problem]:
    """Translate pydantic's errors into located problems (did-you-mean for unknown keys).

    With ``describe``, a wrong or missing value's hint is the field's doc (a composite's
    declared params: ``heads: Attention heads.``)."""
    problems = []
    known_fields = [k for k in model.model_fields if k != "kind"]
    suggested = {
        did_you_mean(str(e["loc"][-1]), known_fields)[len(" (did you mean '") : -3]
        for e in exc.errors()
        if e["type"] == "extra_forbidden" and e["loc"]
    }
    for err in exc.errors():
        if err["type"] == "missing" and err["loc"] and err["loc"][-1] in suggested:
            continue  # the unknown key's did-you-mean already says it
        loc = tuple(err["loc"])
        path = ".".join(
            str(p) for p in (label.split(".") if label else list(base)) + list(loc) if p != ""
        )
        first = str(loc[0]) if loc else None
        if field_marks is not None:
            location = field_marks.get(first or "", where or marks.at(base))
        else:
            location = marks.at(base + loc, key=err["type"] == "extra_forbidden")
        if err["type"] == "extra_forbidden":
            known = [k for k in _model_at(model, loc[:-1]).model_fields if k != "kind"]
            message = f"unknown key '{loc[-1]}'{did_you_mean(str(loc[-1]), known)}"
            hint = f"known keys: {', '.join(known)}" if len(known) <= 12 else None
        elif err["type"] == "missing":
            message, hint = f"'{loc[-1]}' is required", None
        else:
            got = err.get("input")
            message = (
                f"{err['msg'].lower()} (got {got!r})"
                if not isinstance(got, dict)
                else (err["msg"].lower())
            )
            hint = None
        info = model.model_fields.get(first or "")
        if describe and hint is None and info is not None and info.description:
            hint = f"{first}: {info.description}"
        problems.append(Problem(location, path, message, hint))
    return problems
