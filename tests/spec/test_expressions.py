"""Spec arithmetic is an AST whitelist with size bounds, never eval."""

from __future__ import annotations

import re

import pytest

from vitgraph.spec.expressions import ExpressionError, substitute

VARS = {"dim": 384, "depth": 12, "i": 3, "count": 12, "dims": [64, 128], "rate": 0.1}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("$dim", 384),
        ("${dim * 4}", 1536),
        ("${dim // 6}", 64),
        ("${rate * i / max(count - 1, 1)}", 0.1 * 3 / 11),
        ("${dims[1]}", 128),
        ("${'lsa' if i % 2 == 0 else 'gsa'}", "gsa"),
        ("blocks.${i - 1}", "blocks.2"),
        ("${min(dim, 100)}", 100),
    ],
)
def test_expression_evaluates_to_its_value(text, value):
    assert substitute(text, VARS) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${__import__('os')}", "only these functions may be called"),
        ("${dim.__class__}", "'Attribute' is not allowed"),
        ("${10 ** 10 ** 10}", "exponent 10000000000 is too large"),
        ("${'a' * 10 ** 9}", "repetition makes 1000000000 elements"),
        ("${dim / 0}", "division by zero"),
        ("${dimm}", "unknown variable 'dimm' (did you mean 'dim'?)"),
        ("${[x for x in dims]}", "'ListComp' is not allowed"),
        ("${lambda: 1}", "'Lambda' is not allowed"),
        ("$dim + 1", "looks like a variable"),
    ],
)
def test_hostile_or_broken_expression_is_refused(text, message):
    with pytest.raises(ExpressionError, match=re.escape(message)):
        substitute(text, VARS)
