"""Every shipped variant, at reduced size (tests/export_sizes.py), with every weight and
BatchNorm statistic re-drawn: ``vitgraph.optimize`` computes the same outputs as the model
as built (fp32, within 1e-5 of the largest logit), and the optimized model still exports
with torch.export.

``make test`` runs each family's default variant; the rest is marked slow
(``make parity-all``).
"""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.export_sizes import reduced, shipped
from tests.helpers import redraw_
from vitgraph.cli import main
from vitgraph.export import export_program, export_pt2
from vitgraph.passes.inference_passes import sites

RELATIVE = 1e-5
VARIANTS = [
    pytest.param(family, variant, id=variant, marks=() if default else pytest.mark.slow)
    for family, variant, default in shipped()
]


@pytest.mark.parametrize(("family", "variant"), VARIANTS)
def test_optimized_variant_computes_the_same_outputs(family, variant):
    graph = vitgraph.load(variant, overrides=reduced(family, variant))
    torch.manual_seed(0)
    model = redraw_(graph.build()).eval()
    x = graph.example_input(3, seed=1)
    with torch.no_grad():
        expected = model(x)
        for memory_format in ("contiguous", "channels_last"):  # "auto" picks one by timing
            out = vitgraph.optimize(model, memory_format=memory_format)
            got = out(x)
            # a detector returns (logits, boxes): each output within 1e-5 of its largest
            pairs = zip(
                *(o if isinstance(o, tuple) else (o,) for o in (got, expected)), strict=True
            )
            for ours, ref in pairs:
                allowed = RELATIVE * max(1.0, ref.abs().max().item())
                assert (ours - ref).abs().max().item() <= allowed, memory_format


@pytest.mark.parametrize(
    ("family", "variant"),
    [
        ("cait", "cait_xxs24"),
        ("deepvit", "deepvit_s"),
        ("lvvit", "lv_vit_t"),
        ("refiner", "refiner_vit_s"),
    ],
)
def test_every_layer_scale_and_residual_divisor_folds_into_the_projection_before_it(
    family, variant
):
    # the families whose layers scale a branch (CaiT §2.1's LayerScale, LV-ViT's and
    # DeepViT's residual divisors): no scaling node is left at inference
    graph = vitgraph.load(variant, overrides=reduced(family, variant))
    model = redraw_(graph.build()).eval()

    def scales(m):
        return [s.node.id for s in sites(m) if s.block.channel_scale(s.module) is not None]

    before = scales(model)
    out = vitgraph.optimize(model, memory_format="contiguous")
    assert before and scales(out) == []
    assert out.vitgraph_optimized["fold_channel_scales"] == len(before)


@pytest.mark.parametrize(
    "variant", ["levit_128s", "botnet26t_256", "cait_xxs24", "swin_t", "crossvit_9", "cvt_13"]
)
def test_an_optimized_model_exports_and_runs_the_same(variant):
    family = vitgraph.load(variant).name
    graph = vitgraph.load(variant, overrides=reduced(family, variant))
    model = redraw_(graph.build()).eval()
    out = vitgraph.optimize(model, memory_format="channels_last")
    x = torch.randn(3, *graph.input_shape)
    program = export_program(out, x[:2], name=variant)  # batch stays symbolic
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=0, atol=1e-4)


def test_vitgraph_export_optimize_writes_a_program_of_the_optimized_model(tmp_path, capsys):
    path = tmp_path / "levit.pt2"
    args = ["export", "levit_128s", "--set", "image_size=64", "--set", "depths=[1,1,1]"]
    assert main([*args, "--format", "pt2", "--out", str(path), "--optimize"]) == 0
    program = torch.export.load(path)
    names = {name for name, _ in program.named_buffers()} | set(program.state_dict)
    assert not any(name.endswith("running_mean") for name in names)  # the BatchNorms folded


def test_a_channels_last_optimized_model_saves_and_loads_back_the_same(tmp_path, recwarn):
    graph = vitgraph.load("ceit_t", overrides=reduced("ceit", "ceit_t"))
    model = redraw_(graph.build()).eval()
    out = vitgraph.optimize(model, memory_format="channels_last")
    path = export_pt2(out, tmp_path / "ceit.pt2")
    assert not [w for w in recwarn if "complete tensor" in str(w.message)]
    x = torch.randn(3, *graph.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(torch.export.load(path).module()(x), model(x), rtol=0, atol=1e-4)
