"""Structured fuzzing (tests/fuzz_specs.py): only a located SpecError may escape the
loader, the validator or a meta build. ``make test`` runs a smoke of it on the seeds and
ViT-Ti; ``make fuzz`` runs 10,000 cases over every kind (tests/fuzz_report.py). Below the
smoke, each escape the fuzzer found, reproduced."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

import vitgraph
from tests.fuzz_specs import SEEDS, anchors, cases, run
from vitgraph import SpecError
from vitgraph.spec.catalog import registry

SMOKE = ("vit_ti_16",)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_each_seed_spec_validates_and_builds_on_the_meta_device(name):
    vitgraph.load(f"seed/{name}.yaml", text=SEEDS[name]).build(device="meta")


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(cases(SMOKE))
def test_structured_cases_raise_nothing_but_located_spec_errors(case):
    outcome = run(case)
    if case.mode == "invalid":
        assert outcome != "ok", f"{case.kind}: {case.change} was accepted"


@pytest.mark.slow
def test_every_registered_kind_has_an_anchor_that_validates():
    found = anchors()
    assert sorted(found) == sorted(registry().kinds())
    for kind, at in found.items():
        for anchor in at[:1]:
            assert anchor.data["graph"][anchor.index]["kind"] == kind


def _mlp_ratio(kind: str, ratio: str) -> str:
    return (
        "vitgraph: 1\nname: tiny_ratio\ninput: {channels: 3, size: 32}\ngraph:\n"
        "  - {id: embed, kind: patch_embed, patch: 8, dim: 32}\n"
        f"  - {{id: block, kind: {kind}, {ratio}}}\n"
        "  - {id: pool, kind: mean_pool}\n"
        "  - {id: head, kind: linear_head, classes: 5}\n"
    )


@pytest.mark.parametrize(
    "kind, ratio",
    [
        ("mlp", "ratio: 1.0e-3"),
        ("glu_mlp", "ratio: 1.0e-3"),
        ("levit_mlp", "ratio: 1.0e-3"),
        ("encoder_layer", "heads: 2, mlp_ratio: 5.0e-324"),
    ],
)
def test_a_ratio_that_leaves_no_hidden_unit_is_a_located_error_not_a_crash(kind, ratio):
    # fuzz: mlp_ratio=5e-324 gave hidden 0, then an AssertionError in the mlp's build
    with pytest.raises(SpecError) as caught:
        vitgraph.load("tiny.yaml", text=_mlp_ratio(kind, ratio)).build(device="meta")
    (problem,) = caught.value.problems
    assert "leaves no hidden unit (int(32 x" in problem.message
    assert problem.location.line == 6 and problem.hint == "use a ratio of at least 1/32"


def test_a_leff_ratio_that_leaves_no_hidden_unit_is_located_not_a_division_by_zero():
    # fuzz: ceit_layer mlp_ratio=5e-324 divided by zero groups in leff's shape rule
    text = _mlp_ratio("ceit_layer", "heads: 2, mlp_ratio: 5.0e-324")
    with pytest.raises(SpecError) as caught:
        vitgraph.load("tiny.yaml", text=text)
    assert "leaves no hidden unit" in caught.value.problems[0].message
