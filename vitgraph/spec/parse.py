"""Phase 1, parse: safe YAML into plain data plus a side table of where each value sits.

The data is exactly what ``yaml.safe_load`` would give (no keys injected); the
``Marks`` table maps each value's path, e.g. ``("graph", 3, "heads")``, to its location.
Only the standard tags are accepted, duplicate keys are errors, and alias expansion is
bounded so a "billion laughs" document is refused instead of expanded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from vitgraph.errors import Location, Problem, SpecError

#: a YAML value's place: mapping keys (any scalar) and sequence indices
Key = str | int | float | bool | None
Path = tuple[Key, ...]

MAX_NODES = 200_000
MAX_DEPTH = 64
#: the longest spec text parsed (shipped specs are under 4 KB; PyYAML's pure-Python
#: scanner reads roughly 100 KB/s, so this keeps a parse well under 2 s)
MAX_CHARS = 128 * 1024
_STANDARD_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


@dataclass
class Marks:
    """Locations of values (and of mapping keys) by path."""

    file: str
    values: dict[Path, Location] = field(default_factory=dict)
    keys: dict[Path, Location] = field(default_factory=dict)

    def at(self, path: Path, key: bool = False) -> Location:
        """The location of ``path``, or of its nearest located ancestor."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), Location(self.file))


def _location(file: str, mark: yaml.Mark) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


class _DepthLimitedLoader(yaml.SafeLoader):
    """PyYAML composes nodes recursively: ``[[[[...]]]]`` thousands deep would end in a
    RecursionError, so nesting is refused at ``MAX_DEPTH`` while composing."""

    _depth = 0

    def fetch_flow_collection_start(self, TokenClass):
        # refused in the scanner already: with thousands of '[' on one line, PyYAML keeps
        # each as a possible simple key and rescans them (about a second per 1,000)
        if self.flow_level >= MAX_DEPTH:
            raise _TooDeep(self.get_mark())
        return super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH + 1:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse_yaml(text: str, file: str) -> tuple[Any, Marks]:
    """Parse one YAML document; raise a located SpecError for anything unsafe or malformed."""
    marks = Marks(file)
    if len(text) > MAX_CHARS:
        raise SpecError.at(
            Location(file, 1, 1),
            "",
            f"the spec is longer than the limit of {MAX_CHARS:,} characters",
            "a spec lists blocks, not data",
        )
    try:
        root = yaml.compose(text, Loader=_DepthLimitedLoader)
    except _TooDeep as exc:
        raise SpecError.at(
            _location(file, exc.mark),
            "",
            f"nesting deeper than {MAX_DEPTH} levels",
            "specs are shallow: a few levels of mappings and lists",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = _location(file, mark) if mark else Location(file)
        raise SpecError.at(
            loc,
            "",
            f"YAML syntax error: {exc.problem or exc}",
            "check indentation, colons and brackets near this line",
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError.at(Location(file), "", f"YAML error: {exc}") from None
    if root is None:
        raise SpecError.at(Location(file, 1, 1), "", "the spec file is empty")
    memo: dict[int, int] = {}
    expanded = _expanded_size(root, memo)
    if expanded > MAX_NODES:  # aliases would multiply into a "billion laughs"
        culprit = root
        if isinstance(root, yaml.MappingNode):  # point at the top-level value that explodes
            culprit = max((v for _, v in root.value), key=lambda v: memo[id(v)])
        raise SpecError.at(
            _location(file, culprit.start_mark),
            "",
            f"the document expands to {expanded:,} values through YAML aliases "
            f"(limit {MAX_NODES:,})",
            "avoid deeply nested YAML aliases",
        )
    builder = _Builder(file, marks)
    data = builder.build(root, ())
    if builder.problems:
        raise SpecError(builder.problems)
    return data, marks


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values the node becomes once every alias is expanded (memoised per node, so
    it costs one pass over the document as written)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a cycle (impossible in safe YAML) must not recurse forever
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, memo) for item in node.value)
    else:
        size = 1
    memo[key] = min(size, 10**12)
    return memo[key]


class _Builder:
    def __init__(self, file: str, marks: Marks) -> None:
        self.file = file
        self.marks = marks
        self.count = 0
        self.problems: list[Problem] = []
        self.constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        loc = _location(self.file, node.start_mark)
        if self.count > MAX_NODES:
            raise SpecError.at(
                loc,
                _dotted(path),
                f"the document expands to more than {MAX_NODES} values (an alias bomb?)",
                "avoid deeply nested YAML aliases",
            )
        if len(path) > MAX_DEPTH:
            raise SpecError.at(loc, _dotted(path), f"nesting deeper than {MAX_DEPTH} levels")
        self.marks.values.setdefault(path, loc)
        if node.tag not in _STANDARD_TAGS:
            self.problems.append(
                Problem(
                    loc,
                    _dotted(path),
                    f"YAML tag '{_short(node.tag)}' is not allowed",
                    "specs are plain data: remove the tag",
                )
            )
            return None
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.problems.append(
                        Problem(
                            _location(self.file, key_node.start_mark),
                            _dotted(path),
                            "YAML merge keys ('<<') are not supported",
                        )
                    )
                    continue
                key = self.build(key_node, path + ("<key>",))
                if not isinstance(key, str | int | float | bool) or key is None:
                    self.problems.append(
                        Problem(
                            _location(self.file, key_node.start_mark),
                            _dotted(path),
                            "mapping keys must be plain scalars",
                        )
                    )
                    continue
                key_loc = _location(self.file, key_node.start_mark)
                if key in result:
                    self.problems.append(
                        Problem(
                            key_loc,
                            _dotted(path + (key,)),
                            f"duplicate key '{key}'",
                            f"it is already set at line {self.marks.keys[path + (key,)].line}",
                        )
                    )
                    continue
                self.marks.keys[path + (key,)] = key_loc
                result[key] = self.build(value_node, path + (key,))
            self.marks.values.pop(path + ("<key>",), None)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.constructor.construct_object(node, deep=True)


def _dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


def _short(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")
