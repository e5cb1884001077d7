"""The per-family checks, one test each, parametrised over the family table
(tests/families.py): parameter counts to the unit against the reference (and the table's
numbers against the reference itself), MACs against the paper and against the same
counter run on the reference, forward and backward of every variant at a small size,
and the same logits as the reference on reduced copies (full size in ``make
parity-all``)."""

from __future__ import annotations

import contextlib

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

import vitgraph
from tests.families import FAMILIES
from tests.helpers import assert_same_logits
from tests.references import Parity
from vitgraph.spec.catalog import shipped_specs

SLOW = pytest.mark.slow


def _params(column: str, slow: bool = False) -> list:
    """One pytest param per (family, variant) entry of a column, with the variant as id."""
    return [
        pytest.param(row.family, variant, id=variant, marks=SLOW if slow else ())
        for row in FAMILIES.values()
        for variant in getattr(row, column)
    ]


def _toleranced(column: str) -> list:
    return [
        pytest.param(row.family, variant, id=variant)
        for row in FAMILIES.values()
        for variant, (_, tolerance) in getattr(row, column).items()
        if tolerance is not None
    ]


def test_the_table_has_a_row_for_every_shipped_spec_with_all_its_variants():
    variants = {}
    for family, path in shipped_specs().items():
        with open(path, encoding="utf-8") as handle:
            variants[family] = tuple(yaml.safe_load(handle)["variants"])
    assert {row.family: row.variants for row in FAMILIES.values()} == variants
    for row in FAMILIES.values():  # every keyed column names the row's own variants
        for column in ("names", "counts", "recount", "paper_params", "paper_macs", "macs"):
            assert set(getattr(row, column)) <= set(row.variants), (row.family, column)
        assert set(row.recount) <= set(row.counts), row.family


# -- counts -------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "variant"), _params("counts"))
def test_variant_has_the_reference_parameter_count_to_the_unit(family, variant):
    assert vitgraph.load(variant).summary().params == FAMILIES[family].counts[variant]


@pytest.mark.parametrize(
    ("family", "variant"),
    [
        pytest.param(row.family, variant, id=variant, marks=() if row.recount_fast else SLOW)
        for row in FAMILIES.values()
        for variant in row.recount
    ],
)
def test_the_tables_count_is_the_reference_models_own(family, variant):
    reference = FAMILIES[family].recount[variant]()
    assert sum(p.numel() for p in reference.parameters()) == FAMILIES[family].counts[variant]


@pytest.mark.parametrize(("family", "variant"), _toleranced("paper_params"))
def test_params_are_within_the_papers_tolerance(family, variant):
    expected, tolerance = FAMILIES[family].paper_params[variant]
    params = vitgraph.load(variant).summary().params
    assert abs(params - expected) / expected < tolerance


@pytest.mark.parametrize(("family", "variant"), _toleranced("paper_macs"))
def test_macs_are_within_the_papers_tolerance(family, variant):
    expected, tolerance = FAMILIES[family].paper_macs[variant]
    macs = vitgraph.load(variant).summary().macs
    assert abs(macs - expected) / expected < tolerance


@pytest.mark.parametrize(("family", "variant"), _params("macs"))
def test_macs_equal_the_reference_codes_count(family, variant):
    assert vitgraph.load(variant).summary().macs == FAMILIES[family].macs[variant]


@pytest.mark.parametrize(("family", "variant"), _params("counter"))
def test_macs_equal_the_same_counter_run_on_the_reference(family, variant):
    model, x, no_grad = FAMILIES[family].counter[variant]()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad() if no_grad else contextlib.nullcontext():
        model(x)
    assert vitgraph.load(variant).summary().macs == counter.get_total_flops() // 2


# -- training at a small size -------------------------------------------------------------


@pytest.mark.parametrize(("family", "variant"), _params("variants"))
def test_variant_runs_forward_and_backward_at_a_small_size(family, variant):
    small = FAMILIES[family].small
    graph = vitgraph.load(variant, overrides=small.overrides_for(variant))
    model = graph.build().train()
    out = model(graph.example_input(2))
    outputs = tuple(out) if isinstance(out, tuple) else (out,)
    expected = small.outputs(variant) if callable(small.outputs) else small.outputs
    assert [tuple(o.shape) for o in outputs] == list(expected or [(2, *graph.output_shape)])
    sum(o.sum() for o in outputs).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert {name for name, g in grads.items() if g is None} == small.no_grad_for(variant)
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    for name in small.moving:
        assert grads[name].abs().sum() > 0, name
    with torch.no_grad():  # eval: one output, or several whose first is the graph's
        out = model.eval()(graph.example_input(2))
        first = out[0] if isinstance(out, tuple) else out
        assert first.shape == (2, *graph.output_shape)


# -- the same logits as the reference -----------------------------------------------------


def _cases(column: str, slow: bool = False) -> list:
    return [
        pytest.param(row.family, case, id=case, marks=SLOW if slow else ())
        for row in FAMILIES.values()
        for case in getattr(row, column)
    ]


def _assert_parity(parity: Parity) -> float:
    if parity.params is not None:
        for model in (parity.ours, parity.reference):
            assert sum(p.numel() for p in model.parameters()) == parity.params
    diff = assert_same_logits(parity.ours, parity.reference, parity.x)
    ours, theirs = set(parity.ours.state_dict()), set(parity.reference.state_dict())
    if parity.keys is not None:
        assert ours == parity.keys(theirs)
    if parity.same_key_count:
        assert len(ours) == len(theirs)
    if parity.then is not None:
        parity.then(parity)
    return diff


@pytest.mark.parametrize(("family", "case"), _cases("parity"))
def test_reduced_copy_gives_the_references_logits(family, case):
    _assert_parity(FAMILIES[family].parity[case]())


@pytest.mark.parametrize(("family", "case"), _cases("full", slow=True))
def test_full_size_copy_gives_the_references_logits(family, case):
    diff = _assert_parity(FAMILIES[family].full[case]())
    print(f"{case}: max |logit diff| {diff:.2e}")  # quoted in reports (pytest -s)


@pytest.mark.parametrize(
    "family", [row.family for row in FAMILIES.values() if row.timm_pattern is not None]
)
def test_the_sweeps_cover_every_timm_model_of_the_family(family):
    timm = pytest.importorskip("timm")
    row = FAMILIES[family]
    assert sorted(timm.list_models(row.timm_pattern)) == sorted(row.timm_models)
    assert set(row.parity) == set(row.full) == set(row.timm_models)
    registered = {row.names[v] for v in row.names if v not in row.timm_kwargs}
    assert registered <= set(row.timm_models)
    if row.timm_complete:  # every timm model of the family is a variant's reference
        assert registered == set(row.timm_models)
