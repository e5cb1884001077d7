"""Twins (arXiv:2104.13840), SVT and PCPVT: from_timm parity for every timm ``twins_*``
model at its own resolution, exact parameter counts, and the stage layout (LSA/GSA
alternation, PEG after the first layer)."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph import SpecError

timm = pytest.importorskip("timm")

TWINS_MODELS = sorted(timm.list_models("twins_*"))
SOURCES = {
    "twins_svt_s": "twins_svt_small",
    "twins_svt_b": "twins_svt_base",
    "twins_svt_l": "twins_svt_large",
    "twins_pcpvt_s": "twins_pcpvt_small",
    "twins_pcpvt_b": "twins_pcpvt_base",
    "twins_pcpvt_l": "twins_pcpvt_large",
}
HEADS = {
    "svt_small": (2, 4, 8, 16),
    "svt_base": (3, 6, 12, 24),
    "svt_large": (4, 8, 16, 32),
    "pcpvt_small": (1, 2, 5, 8),
    "pcpvt_base": (1, 2, 5, 8),
    "pcpvt_large": (1, 2, 5, 8),
}
TINY = {"depths": [2, 2, 2, 2], "dims": [8, 16, 32, 64], "heads": [1, 2, 4, 8]}


def _reduced(name: str) -> torch.nn.Module:
    """Two layers per stage (one LSA + one GSA for SVT), 8 channels per head, the model's
    own heads, mlp ratios, sr ratios and windows, at 224."""
    heads = HEADS[name.removeprefix("twins_")]
    model = timm.create_model(
        name,
        pretrained=False,
        depths=(2, 2, 2, 2),
        embed_dims=tuple(8 * h for h in heads),
        num_heads=heads,
    )
    return redraw_(model.eval())


def test_every_timm_twins_model_has_a_variant():
    assert set(SOURCES.values()) == set(TWINS_MODELS)


def test_twins_svt_s_has_the_reference_parameter_count():
    assert vitgraph.load("twins_svt_s").summary().params == 24_060_776


@pytest.mark.parametrize("variant", sorted(SOURCES))
def test_variant_parameter_count_equals_timm(variant):
    with torch.device("meta"):
        reference = timm.create_model(SOURCES[variant], pretrained=False)
    expected = sum(p.numel() for p in reference.parameters())
    assert vitgraph.load(variant).summary().params == expected


@pytest.mark.parametrize("name", TWINS_MODELS)
def test_from_timm_gives_timm_logits(name):
    reference = _reduced(name)
    ours = vitgraph.from_timm(reference)
    assert_same_logits(ours, reference, torch.randn(1, 3, 224, 224))


def test_from_timm_handles_odd_depths_and_stochastic_depth():
    reference = timm.create_model(
        "twins_svt_small",
        pretrained=False,
        depths=(3, 2, 5, 2),
        embed_dims=(8, 16, 32, 64),
        num_heads=(1, 2, 4, 8),
        drop_path_rate=0.1,
        num_classes=10,
    )
    reference = redraw_(reference.eval())
    ours = vitgraph.from_timm(reference)
    assert_same_logits(ours, reference, torch.randn(1, 3, 224, 224))
    assert ours.get_submodule("stage3.blocks.3.drop_path1").rate == pytest.approx(0.1 * 9 / 11)


def test_from_timm_refuses_a_stage_with_one_layer():
    model = timm.create_model("twins_pcpvt_small", pretrained=False, depths=(1, 2, 2, 2))
    with pytest.raises(SpecError, match="depths with 1 layer"):
        vitgraph.from_timm(model)


@pytest.mark.parametrize("variant", sorted(SOURCES))
def test_variant_runs_forward_and_backward_when_reduced(variant):
    model = vitgraph.load(variant, overrides={**TINY, "classes": 3}).build()
    out = model(torch.randn(2, 3, 224, 224))
    out.sum().backward()
    assert out.shape == (2, 3)
    assert model.get_submodule("stage4.pos_block.proj.0").weight.grad is not None


def test_svt_alternates_local_and_global_attention_and_pcpvt_is_global_only():
    def kinds(variant: str, stage: str) -> list[str]:
        graph = vitgraph.load(variant)
        return [n.kind for n in graph.nodes if n.id.startswith(stage) and n.id.endswith(".attn")]

    assert kinds("twins_svt_s", "stage3.") == ["grouped_attention", "sr_attention"] * 5
    assert kinds("twins_pcpvt_s", "stage3.") == ["sr_attention"] * 6
    graph = vitgraph.load("twins_svt_s")
    order = [n.id for n in graph.nodes if n.id.startswith("stage1.")]
    assert order.index("stage1.pos_block") == order.index("stage1.first.residual2") + 1
    assert graph.node("stage1.blocks.0.attn").params.sr_ratio == 8


def test_summary_has_one_row_per_stage_with_the_paper_shapes():
    rows = {r.id: r for r in vitgraph.load("twins_svt_s").summary().grouped()}
    assert list(rows) == ["stage1", "stage2", "stage3", "stage4", "norm", "pool", "head"]
    assert [rows[f"stage{k}"].output_shape for k in range(1, 5)] == [
        (3136, 64),
        (784, 128),
        (196, 256),
        (49, 512),
    ]
    assert rows["stage1"].kind == "twins_stage"


def test_validate_cli_accepts_a_list_override_of_the_depths():
    from vitgraph.cli import main

    assert main(["validate", "specs/twins.yaml", "--set", "depths=[2, 2, 2, 2]"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", TWINS_MODELS)
def test_full_size_from_timm_gives_timm_logits(name):
    torch.set_num_threads(2)
    reference = redraw_(timm.create_model(name, pretrained=False).eval())
    ours = vitgraph.from_timm(reference)
    diff = assert_same_logits(ours, reference, torch.randn(1, 3, 224, 224))
    print(f"{name}: max |Δ| {diff:.2e}")
