"""Spec variables and safe arithmetic: ``$dim`` and ``${dim * 4}``.

Expressions are parsed with ``ast`` and evaluated by walking a whitelist of node types;
nothing is ever passed to ``eval``. Sizes are bounded so a hostile spec cannot make the
loader hang or exhaust memory (``10**10**10``, ``'a' * 10**9``).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

MAX_TEXT = 400
MAX_INT = 10**15
MAX_SEQUENCE = 10_000

_WHOLE_VAR = re.compile(r"^\$([A-Za-z_][A-Za-z_0-9]*)$")
_INTERP = re.compile(r"\$\{([^{}]*)\}")

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "int": int,
    "float": float,
    "round": round,
    "abs": abs,
    "len": len,
    "sum": sum,
    "str": str,  # ids built from an index (older specs; now: named outputs, blocks.small)
}


class ExpressionError(Exception):
    """A bad expression; the loader turns it into a located SpecError."""


def is_expression(value: object) -> bool:
    return isinstance(value, str) and ("$" in value)


def names_in(value: object) -> set[str]:
    """Variable names an expression string refers to (for ordering args)."""
    if not isinstance(value, str):
        return set()
    whole = _WHOLE_VAR.match(value)
    if whole:
        return {whole.group(1)}
    found: set[str] = set()
    for text in _INTERP.findall(value):
        if len(text.strip()) > MAX_TEXT:  # ``evaluate`` reports it; never parse it here
            continue
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except (SyntaxError, MemoryError, RecursionError):
            continue
        found |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return found - set(_FUNCTIONS)


def substitute(value: Any, variables: Mapping[str, Any]) -> Any:
    """Resolve ``$name`` / ``${expr}`` in one scalar; other values pass through."""
    if not isinstance(value, str) or "$" not in value:
        return value
    whole = _WHOLE_VAR.match(value)
    if whole:
        return _lookup(whole.group(1), variables)
    matches = list(_INTERP.finditer(value))
    if not matches:
        raise ExpressionError(
            f"'{value}' looks like a variable but is neither $name nor ${{expression}}"
        )
    if len(matches) == 1 and matches[0].span() == (0, len(value)):
        return evaluate(matches[0].group(1), variables)
    return _INTERP.sub(lambda m: str(evaluate(m.group(1), variables)), value)


def evaluate(text: str, variables: Mapping[str, Any]) -> Any:
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise ExpressionError(f"expression is {len(text)} characters long (limit {MAX_TEXT})")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse expression '{text}': {exc.msg}") from None
    except (MemoryError, RecursionError):  # the parser's own stack limit
        raise ExpressionError(f"expression '{text}' nests too deeply") from None
    try:
        return _Evaluator(variables).visit(tree.body)
    except RecursionError:  # e.g. 400 unary minus signs: the walk recurses per level
        raise ExpressionError(f"expression '{text}' nests too deeply") from None


def _lookup(name: str, variables: Mapping[str, Any]) -> Any:
    if name not in variables:
        from vitgraph.suggest import did_you_mean

        raise ExpressionError(f"unknown variable '{name}'{did_you_mean(name, variables)}")
    return variables[name]


def _size(value: Any, budget: int = MAX_SEQUENCE) -> int:
    """Elements of a value with nested lists flattened and a string counting one per
    character, so ``[[1] * 10000] * 10000`` (10^8 shared elements) or a list of long
    strings cannot hide its size; stops counting once past ``budget``."""
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, list | tuple):
        return 1
    total = 0
    for item in value:  # every item counts at least once: ``[''] * 10**9`` is 10^9 items
        total += max(1, _size(item, budget - total))
        if total > budget:
            break
    return total


def _digits(value: int) -> str:
    """A huge int's size in words: formatting it as a float would overflow."""
    return f"{value:.3e}" if value.bit_length() < 1000 else f"of {len(str(abs(value)))} digits"


def _checked(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise ExpressionError(f"result {_digits(value)} is too large (limit {MAX_INT:.0e})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ExpressionError("result is not a finite number")
    if isinstance(value, complex):  # (-8) ** 0.5
        raise ExpressionError("result is not a real number")
    if isinstance(value, str | list | tuple) and _size(value) > MAX_SEQUENCE:
        raise ExpressionError(
            f"result has more than {MAX_SEQUENCE} elements (nested lists and characters counted)"
        )
    return value


class _Evaluator(ast.NodeVisitor):
    def __init__(self, variables: Mapping[str, Any]) -> None:
        self.variables = variables

    def generic_visit(self, node: ast.AST) -> Any:
        raise ExpressionError(f"'{type(node).__name__}' is not allowed in an expression")

    def visit_Constant(self, node: ast.Constant) -> Any:
        if not isinstance(node.value, int | float | str | bool | type(None)):
            raise ExpressionError(f"constant {node.value!r} is not allowed")
        return _checked(node.value)

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        return _lookup(node.id, self.variables)

    def visit_List(self, node: ast.List) -> Any:
        return _checked([self.visit(e) for e in node.elts])

    def visit_Tuple(self, node: ast.Tuple) -> Any:
        return _checked([self.visit(e) for e in node.elts])

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.USub):
            return _checked(-value)
        if isinstance(node.op, ast.UAdd):
            return value
        if isinstance(node.op, ast.Not):
            return not value
        raise ExpressionError(f"operator '{type(node.op).__name__}' is not allowed")

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        op = _BINARY.get(type(node.op))
        if op is None:
            raise ExpressionError(f"operator '{type(node.op).__name__}' is not allowed")
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, ast.Pow):
            if not isinstance(right, int | float) or abs(right) > 64:
                raise ExpressionError(f"exponent {right!r} is too large (limit 64)")
            if (
                isinstance(left, int | float)
                and abs(left) > 1
                and abs(right) * math.log10(abs(left)) > 15
            ):
                raise ExpressionError(f"{left}**{right} is too large (limit {MAX_INT:.0e})")
        if isinstance(node.op, ast.Mult):
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list) and isinstance(times, int):
                    if _size(seq) * times > MAX_SEQUENCE:
                        raise ExpressionError(
                            f"repetition makes {_size(seq) * times} elements (limit {MAX_SEQUENCE})"
                        )
        try:
            return _checked(op(left, right))
        except ZeroDivisionError:
            raise ExpressionError("division by zero") from None
        except TypeError as exc:
            raise ExpressionError(f"cannot apply operator: {exc}") from None

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        values = [self.visit(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return all(values)
        return any(values)

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        for op_node, right_node in zip(node.ops, node.comparators, strict=True):
            op = _COMPARE.get(type(op_node))
            if op is None:
                raise ExpressionError(f"comparison '{type(op_node).__name__}' is not allowed")
            right = self.visit(right_node)
            try:
                if not op(left, right):
                    return False
            except TypeError as exc:
                raise ExpressionError(f"cannot compare: {exc}") from None
            left = right
        return True

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        seq = self.visit(node.value)
        index = self.visit(node.slice)
        if not isinstance(seq, list | str) or not isinstance(index, int):
            raise ExpressionError("only a list indexed by an integer is allowed")
        if not -len(seq) <= index < len(seq):
            raise ExpressionError(f"index {index} is out of range for a list of {len(seq)}")
        return seq[index]

    def visit_Call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            allowed = ", ".join(sorted(_FUNCTIONS))
            raise ExpressionError(f"only these functions may be called: {allowed}")
        if node.keywords:
            raise ExpressionError("keyword arguments are not allowed in an expression")
        args = [self.visit(a) for a in node.args]
        try:
            return _checked(_FUNCTIONS[node.func.id](*args))
        except (TypeError, ValueError) as exc:
            raise ExpressionError(f"{node.func.id}(): {exc}") from None
