"""IPT (Chen et al., arXiv:2012.00364): the output sizes of every task, unfold then fold is
the identity, a task switch trains only that task's head, query and tail, the tiled
inference stitches tiles exactly, errors are located, one task exports to ONNX, and —
with a checkout of the official code — the same outputs as huawei-noah/Pretrained-IPT."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph.blocks.ipt import fold_patches, forward_chop, set_task, unfold_patches
from vitgraph.interop.ipt_official import load_official

SMALL = {"size": 12, "feats": 8, "heads": 2, "depth": 1}


@pytest.mark.parametrize(
    ("variant", "side"),
    [
        ("ipt_sr2", 96),
        ("ipt_sr3", 144),
        ("ipt_sr4", 192),
        ("ipt_denoise", 48),
        ("ipt_derain", 48),
        ("ipt_pretrain", 96),
    ],
)
def test_a_48_pixel_input_comes_out_at_the_tasks_scale(variant, side):
    graph = vitgraph.load(variant)
    assert graph.input_shape == (3, 48, 48)
    assert graph.output_shape == (3, side, side)


def test_the_pretraining_models_tasks_come_out_at_their_own_scales():
    sides = [
        vitgraph.load("ipt_pretrain", overrides={"task": t}).output_shape[-1] for t in range(6)
    ]
    assert sides == [96, 144, 192, 48, 48, 48]


def test_the_body_is_256_tokens_of_576_values():
    rows = {row.id: row for row in vitgraph.load("ipt_sr2").summary().rows}
    assert rows["unfold"].output_shape == (256, 576)
    assert rows["fold"].output_shape == (64, 48, 48)


def test_unfold_then_fold_is_the_identity():
    x = torch.randn(2, 64, 48, 48)
    tokens = unfold_patches(x, patch=3)
    assert tokens.shape == (2, 256, 576)
    assert torch.equal(fold_patches(tokens, patch=3, size=(48, 48)), x)


def test_a_task_switch_trains_only_that_tasks_head_query_and_tail():
    torch.manual_seed(0)
    model = vitgraph.build("ipt_pretrain", overrides=SMALL).train()
    x = torch.rand(2, 3, 12, 12) * 255
    set_task(model, 2)
    out = model(x)
    assert out.shape == (2, 3, 48, 48)  # x4
    out.square().mean().backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.any()}
    branch = {n.split(".")[0] + "." + n.split(".")[2] for n in trained if ".branches." in n}
    assert branch == {"head.2", "tail.2"}
    rows = model.get_parameter("query_embed.weight").grad.abs().sum(-1)
    assert rows.nonzero().flatten().tolist() == [2]
    shared = {n for n, _ in model.named_parameters() if ".branches." not in n}
    assert shared - trained == {
        "sub_mean.weight",
        "sub_mean.bias",
        "add_mean.weight",
        "add_mean.bias",
    }  # the fixed mean shifts; everything else shared is trained by every task


def test_switching_back_gives_the_first_tasks_output_again():
    model = vitgraph.build("ipt_pretrain", overrides=SMALL).eval()
    x = torch.rand(1, 3, 12, 12) * 255
    with torch.no_grad():
        first = model(x)
        assert set_task(model, 5)(x).shape == (1, 3, 12, 12)
        assert torch.equal(set_task(model, 0)(x), first)


def test_a_task_the_model_does_not_have_is_refused():
    model = vitgraph.build("ipt_sr2", overrides=SMALL)
    with pytest.raises(ValueError, match=r"task 1 is out of range: the model has 1 task\(s\), 0-0"):
        set_task(model, 1)
    with pytest.raises(vitgraph.SpecError) as caught:
        vitgraph.load("ipt_pretrain", overrides={"task": 6})
    message = str(caught.value)
    assert "ipt.yaml" in message
    assert "task 6 is out of range: 6 task(s) (tasks), 0-5" in message
    assert "hint: set task to a value from 0 to 5" in message


def test_a_body_the_patch_does_not_divide_is_reported_at_the_spec():
    with pytest.raises(vitgraph.SpecError) as caught:
        vitgraph.load("ipt_sr2", overrides={"size": 47})
    message = str(caught.value)
    assert "specs/ipt.yaml" in message
    assert "patch 3 must divide the 47x47 body it receives (height 47 leaves 2)" in message


class _Nearest(torch.nn.Module):
    """A pointwise x2 up-sampler: any tiling of it must give the whole image's output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest")


def test_tiled_inference_stitches_the_tiles_into_the_whole_images_output():
    x = torch.randn(2, 3, 50, 61)
    assert torch.allclose(forward_chop(_Nearest(), x, tile=12), _Nearest()(x), atol=1e-6)


def test_tiled_inference_runs_ipt_on_any_size_and_equals_it_on_one_tile():
    model = vitgraph.build("ipt_sr2", overrides=SMALL).eval()
    with torch.no_grad():
        assert forward_chop(model, torch.rand(1, 3, 20, 27), tile=12).shape == (1, 3, 40, 54)
        one = torch.rand(1, 3, 12, 12)
        assert torch.allclose(forward_chop(model, one, tile=12), model(one), atol=1e-4)


def test_an_image_smaller_than_a_tile_is_refused_with_both_sizes():
    with pytest.raises(ValueError, match="the image 40x60 is smaller than one 48x48 tile"):
        forward_chop(_Nearest(), torch.zeros(1, 3, 40, 60))


@pytest.mark.slow  # ipt_sr2 is exported in the fast run by tests/test_export.py
def test_a_pretraining_models_x4_task_exports_to_onnx_and_matches_in_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    from vitgraph.export import export_onnx

    # export_onnx raises unless onnxruntime's output is within 1e-4 x max |output|
    path = export_onnx("ipt_pretrain", tmp_path / "ipt.onnx", overrides={**SMALL, "task": 2})
    assert path.stat().st_size > 0


# -- the official code ---------------------------------------------------------------------

#: a checkout of huawei-noah/Pretrained-IPT (not a package: read from a path, never copied)
OFFICIAL = os.environ.get("VITGRAPH_IPT_OFFICIAL", "")


def _official(scales: list[int]):
    if not (Path(OFFICIAL) / "model" / "ipt.py").is_file():
        pytest.skip("set VITGRAPH_IPT_OFFICIAL to a checkout of huawei-noah/Pretrained-IPT")
    sys.path.insert(0, OFFICIAL)
    try:
        from model import ipt as official  # type: ignore[import-not-found]
    finally:
        sys.path.remove(OFFICIAL)
    args = types.SimpleNamespace(
        n_feats=8, rgb_range=255, n_colors=3, scale=scales, patch_size=12, patch_dim=3,
        num_heads=2, num_layers=2, num_queries=len(scales), dropout_rate=0, no_mlp=False,
        pos_every=False, no_pos=False, no_norm=False,
    )  # fmt: skip
    return official.ipt(args).eval()


def test_every_task_gives_the_official_codes_output_with_its_redrawn_weights():
    torch.manual_seed(0)
    reference = _official([2, 3, 4, 1, 1, 1])
    redraw_(reference)
    ours = vitgraph.build("ipt_pretrain", overrides={**SMALL, "depth": 2}).eval()
    load_official(ours, reference.state_dict())
    x = torch.rand(2, 3, 12, 12) * 255
    for task in range(6):
        reference.set_scale(task)
        set_task(ours, task)
        assert_same_logits(ours, reference, x)
