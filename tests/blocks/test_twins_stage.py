"""Twins (arXiv:2104.13840), SVT and PCPVT: ``from_timm`` on odd depths and a refused
one-layer stage, and the stage layout (LSA/GSA alternation, PEG after the first layer).
Counts and parity per timm model: tests/families.py."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph import SpecError

timm = pytest.importorskip("timm")


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
