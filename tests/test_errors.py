"""Every bad-spec fixture gives exactly its expected located message (tests/specs/bad/)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import vitgraph
from vitgraph import SpecError

BAD = Path(__file__).parent / "specs" / "bad"
FIXTURES = sorted(BAD.glob("*.yaml"))


def test_there_are_at_least_fifteen_fixtures():
    assert len(FIXTURES) >= 15


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_bad_spec_is_reported_at_its_line_with_the_expected_message(path: Path):
    expected = path.with_suffix(".expected").read_text().rstrip("\n")
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        vitgraph.load(str(path))
    assert time.perf_counter() - start < 2.0
    assert str(info.value) == expected.replace("{file}", str(path))
    for problem in info.value.problems:
        assert problem.location.file == str(path) and problem.location.line > 0


def test_unknown_variant_given_by_the_caller_suggests_the_closest():
    with pytest.raises(SpecError) as info:
        vitgraph.load("vit", variant="vit_s16")
    (problem,) = info.value.problems
    assert problem.message == "unknown variant 'vit_s16' (did you mean 'vit_s_16'?)"
    assert problem.location.file.endswith("vit.yaml") and problem.location.line > 0


def test_unknown_override_is_refused_with_a_suggestion():
    with pytest.raises(SpecError) as info:
        vitgraph.load("vit_ti_16", overrides={"dpeth": 6})
    (problem,) = info.value.problems
    assert str(problem.location) == "<--set>"
    assert (
        problem.message == "'dpeth' names no arg, input field or graph node (did you mean 'depth'?)"
    )


def test_override_that_breaks_shapes_is_located_at_the_node():
    with pytest.raises(SpecError) as info:
        vitgraph.load("vit_ti_16", overrides={"heads": 5})
    (problem,) = info.value.problems
    assert problem.path == "blocks.0.attn"
    assert problem.message == "heads 5 must divide the token width 192"
    assert problem.location.file.endswith("vit.yaml")


def test_bad_set_syntax_is_a_spec_error():
    from vitgraph.cli import parse_sets

    with pytest.raises(SpecError, match="expected key=value"):
        parse_sets(["depth"])


def test_unknown_spec_name_suggests_a_shipped_one():
    with pytest.raises(SpecError, match="did you mean 'vit_s_16'"):
        vitgraph.load("vit_s_61")
