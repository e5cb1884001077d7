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
    assert problem.location.line == 6 and problem.hint == "set ratio to at least 1/32"


def test_a_leff_ratio_that_leaves_no_hidden_unit_is_located_not_a_division_by_zero():
    # fuzz: ceit_layer mlp_ratio=5e-324 divided by zero groups in leff's shape rule
    text = _mlp_ratio("ceit_layer", "heads: 2, mlp_ratio: 5.0e-324")
    with pytest.raises(SpecError) as caught:
        vitgraph.load("tiny.yaml", text=text)
    assert "leaves no hidden unit" in caught.value.problems[0].message


@pytest.mark.parametrize("kind", ["cls_token", "dist_token", "reg_token"])
def test_a_negative_token_init_std_is_refused_at_the_param_not_by_torch(kind):
    # fuzz: init_std=-0.5 reached nn.init.normal_ (RuntimeError: normal expects std >= 0.0)
    text = _mlp_ratio("encoder_layer", "heads: 2").replace(
        "  - {id: pool, kind: mean_pool}\n",
        f"  - {{id: token, kind: {kind}, init_std: -0.5}}\n  - {{id: pool, kind: mean_pool}}\n",
    )
    with pytest.raises(SpecError) as caught:
        vitgraph.load("tokens.yaml", text=text)
    (problem,) = caught.value.problems
    col = text.splitlines()[6].index("-0.5") + 1  # at the value
    assert str(problem) == (
        f"tokens.yaml:7:{col}: token.init_std: input should be greater than or equal to 0 "
        "(got -0.5)"
    )


def test_visual_tokens_too_narrow_for_the_transformer_s_groups_are_located_not_a_conv_error():
    # fuzz: vt_module dim=1 passed the shape rule, then nn.Conv1d refused 1 channel in 8
    # groups (ValueError) in the build
    text = (
        "vitgraph: 1\nname: vt_narrow\ninput: {channels: 3, size: 32}\ngraph:\n"
        "  - {id: stem, kind: resnet_stem, dim: 8}\n"
        "  - {id: tokenizer, kind: vt_tokenizer, dim: 1, tokens: 4, heads: 1, groups: 1}\n"
        "  - {id: transformer, kind: vt_transformer, heads: 1, groups: 1}\n"
        "  - {id: pool, kind: mean_pool}\n"
        "  - {id: head, kind: linear_head, classes: 5}\n"
    )
    with pytest.raises(SpecError) as caught:
        vitgraph.load("vt.yaml", text=text)
    (problem,) = caught.value.problems
    assert (problem.location.line, problem.path, problem.message, problem.hint) == (
        7,
        "transformer",
        "vt_transformer halves the token width for its keys and queries, but the tokens "
        "have 1 channel",
        "give the tokens at least 2 channels",
    )
    odd = text.replace("dim: 1,", "dim: 9,").replace(
        "groups: 1}\n  - {id: pool", "groups: 4}\n  - {id: pool"
    )
    with pytest.raises(
        SpecError, match="the value projection of 9 channels does not split into 4 groups"
    ):
        vitgraph.load("vt.yaml", text=odd)  # 9 // 2 = 4 splits into 4: 9 does not


def test_a_stage_param_its_chosen_layer_composite_does_not_take_is_located_not_a_crash():
    # fuzz: swin_stage pretrained_window=1 with its default layer swin_layer (a composite,
    # whose params model has no role) raised AttributeError: role while writing the error
    text = (
        "vitgraph: 1\nname: stage\ninput: {channels: 3, size: 32}\ngraph:\n"
        "  - {id: embed, kind: patch_embed, patch: 4, dim: 32}\n"
        "  - {id: stage, kind: swin_stage, depth: 2, heads: 2, window: 4, downsample: false,\n"
        "     pretrained_window: 8}\n"
        "  - {id: pool, kind: mean_pool}\n"
        "  - {id: head, kind: linear_head, classes: 5}\n"
    )
    with pytest.raises(SpecError) as caught:
        vitgraph.load("stage.yaml", text=text)
    (problem,) = caught.value.problems
    assert (problem.location.line, problem.message, problem.hint) == (
        7,
        "swin_stage's pretrained_window does not reach its layer swin_layer, which takes no "
        "pretrained_window",
        "leave pretrained_window out, or choose another layer that takes it: swinv2_layer",
    )


def test_a_levit_attn_ratio_that_leaves_no_value_unit_is_located_not_an_empty_layer():
    # fuzz: attn_ratio=5e-324 validated and built values of width int(16 x 5e-324) = 0
    # (torch: "Initializing zero-element tensors is a no-op")
    text = _mlp_ratio("levit_attention", "heads: 2, key_dim: 16, attn_ratio: 1.0e-3")
    with pytest.raises(SpecError) as caught:
        vitgraph.load("levit.yaml", text=text)
    (problem,) = caught.value.problems
    assert (problem.location.line, problem.message, problem.hint) == (
        6,
        "attn_ratio 0.001 of width 16 leaves no value unit (int(16 x 0.001) = 0)",
        "set attn_ratio to at least 1/16",
    )
