"""SpecError: the one exception a user sees for any problem with a spec.

A SpecError carries one Problem per mistake, each located at ``file:line:col`` in the
compiler tradition, with an optional hint line. All phases collect problems and raise
once, so a user sees every mistake of a spec at the same time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Location:
    """Where a value sits in a YAML file (1-based line and column)."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    """One located mistake: ``file:line:col: path: message`` plus a hint line."""

    location: Location
    path: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        head = (
            f"{self.location}: {self.path}: {self.message}"
            if self.path
            else (f"{self.location}: {self.message}")
        )
        return head + (f"\n  hint: {self.hint}" if self.hint else "")

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "col": self.location.col,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
        }


class SpecError(Exception):
    """Every user-facing spec problem. ``problems`` lists them all, each located."""

    def __init__(self, problems: Iterable[Problem] | Problem) -> None:
        self.problems: tuple[Problem, ...] = (
            (problems,) if isinstance(problems, Problem) else tuple(problems)
        )
        if not self.problems:
            raise ValueError("SpecError needs at least one problem")
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def at(cls, location: Location, path: str, message: str, hint: str | None = None) -> SpecError:
        return cls(Problem(location, path, message, hint))

    def as_dicts(self) -> list[dict[str, object]]:
        return [p.as_dict() for p in self.problems]


class UnknownNode(SpecError, KeyError):
    """``Graph.node`` of an id the graph does not have: a SpecError (located at the spec,
    with a did-you-mean) that is also the KeyError the lookup always raised."""

    def __str__(self) -> str:
        return SpecError.__str__(self)


class ShapeError(Exception):
    """Raised by a block's shape rule; the infer phase locates it at the node.

    ``field`` names the parameter the message is about (its YAML mark is used when the
    spec wrote it), so the error points at the number that is wrong.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        hint: str | None = None,
        fits: list[Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint
        #: values of ``field`` that fit this node, when ``hint`` proposes them as
        #: ``{fits}``: the infer phase keeps those that fit every node reading the same
        #: spec value (a Swin window valid for every stage, not only the first)
        self.fits = fits


class SpecDeprecation(FutureWarning):
    """A spec uses a name that still works but is deprecated (a merged or renamed block
    kind); the message says what replaces it. A ``FutureWarning``, so users see it."""
