"""Every shipped variant, at reduced size (tests/export_sizes.py), traces with torch.fx
(the model and each block module on its own), exports with torch.export (``.pt2``, batch
dim symbolic) and to ONNX, and both exported files compute eager PyTorch's logits:
the program within 1e-5, onnxruntime within 1e-4 × max(1, max |logits|).

``make test`` runs each family's default variant plus the few variants whose block
structure no default has; the rest is marked slow (``make parity-all``).
"""

from __future__ import annotations

import os
import time

import pytest
import torch

import vitgraph
from tests.export_sizes import REDUCTIONS, reduced, shipped
from vitgraph.cli import main
from vitgraph.export import (
    ExportError,
    example_input,
    export_onnx,
    export_program,
    export_pt2,
    onnx_difference,
    program_to_onnx,
    run_onnx,
)
from vitgraph.spec.catalog import shipped_specs

pytest.importorskip("onnxruntime")

#: variants with a block structure that no family default has, exported in make test too
DISTINCT = {
    "pit_ti_distilled": "a distillation token through PiT's pooling stages",
    "t2t_vit_t_14": "T2T's soft split with full attention instead of Performer",
    "crossvit_9_dagger": "CrossViT's convolutional patch embedding",
    "cct_7_3x1": "CCT with a one-layer convolutional tokenizer",
    "dinov2_vit_g_14_reg4": "DINOv2-g's packed SwiGLU after four register tokens",
}
VARIANTS = [
    pytest.param(
        family,
        variant,
        default,
        id=variant,
        marks=() if default or variant in DISTINCT else pytest.mark.slow,
    )
    for family, variant, default in shipped()
]
SMALL = {"depth": 1, "image_size": 32}


def test_every_shipped_spec_has_a_reduced_size_and_distinct_variants_exist():
    assert sorted(REDUCTIONS) == sorted(shipped_specs())
    names = {variant for _, variant, _ in shipped()}
    assert set(DISTINCT) <= names


@pytest.mark.parametrize(("family", "variant", "default"), VARIANTS)
def test_variant_traces_exports_and_runs_the_same_in_torch_export_and_onnxruntime(
    family, variant, default, tmp_path
):
    start = time.perf_counter()
    graph = vitgraph.load(variant, overrides=reduced(family, variant))
    model = graph.build().eval()
    x = example_input(graph.input_type, batch=3, seed=1)
    with torch.no_grad():
        expected = model(x)
    first = expected[0] if isinstance(expected, tuple) else expected  # detection: (logits, boxes)
    assert first.shape == (3, *graph.output_shape)

    blocks = [  # a parameter holder without a forward (BoTNet's RelativeTables) is no block
        module
        for module in model.modules()
        if type(module).__module__.startswith("vitgraph.blocks")
        and type(module).forward is not torch.nn.Module.forward
    ]
    for module in blocks:
        torch.fx.symbolic_trace(module)
    omitted = {name: None for name in graph.extra_inputs}  # a pixel mask: called without
    with torch.no_grad():
        traced = torch.fx.symbolic_trace(model, concrete_args=omitted or None)(x)
    torch.testing.assert_close(traced, expected, rtol=0, atol=1e-5)

    # one program (exported at batch 2, run at batch 3: the batch dim is symbolic), run,
    # and translated to ONNX, as export_pt2 and export_onnx do each; the .pt2 file round
    # trip is checked in the fast tests (the slow sweep's cost is the ONNX translation)
    program = export_program(model, x[:2], name=variant)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), expected, rtol=0, atol=1e-5)
    if default:
        torch.export.save(program, tmp_path / "model.pt2")
        with torch.no_grad():
            reloaded = torch.export.load(tmp_path / "model.pt2").module()
            torch.testing.assert_close(reloaded(x), expected, rtol=0, atol=1e-5)

    path = program_to_onnx(program, tmp_path / "model.onnx", name=variant)
    diff, allowed = onnx_difference(path, model, x)
    line = (
        f"export {variant}: {sum(p.numel() for p in model.parameters()):,} params, "
        f"onnxruntime max |Δ| {diff:.2e} (allowed {allowed:.1e}), "
        f"{time.perf_counter() - start:.1f} s"
    )
    print(line)
    if os.environ.get("VITGRAPH_SWEEP_LOG"):  # sweep numbers for a report, as they come
        with open(os.environ["VITGRAPH_SWEEP_LOG"], "a", encoding="utf-8") as log:
            log.write(line + "\n")
    assert diff <= allowed


def test_export_onnx_of_a_graph_builds_it_with_the_seed_and_checks_it(tmp_path):
    graph = vitgraph.load("deit_ti_distilled", overrides=SMALL)
    path = export_onnx(graph, tmp_path / "deit.onnx", seed=5, batch=2)  # checked inside
    torch.manual_seed(5)
    model = graph.build().eval()
    x = example_input(graph.input_shape, batch=4)
    (logits,) = run_onnx(path, x)
    with torch.no_grad():  # eval mode: one output, the mean of the two heads
        torch.testing.assert_close(logits, model(x), rtol=0, atol=1e-4)


def test_export_pt2_with_a_static_batch_refuses_another_batch(tmp_path):
    path = export_pt2(
        "vit_ti_16", tmp_path / "vit.pt2", overrides=SMALL, batch=2, dynamic_batch=False
    )
    program = torch.export.load(path).module()
    assert program(torch.randn(2, 3, 32, 32)).shape == (2, 1000)
    with pytest.raises(Exception, match="2"):
        program(torch.randn(3, 3, 32, 32))


def test_export_leaves_the_model_in_train_mode_when_it_was(tmp_path):
    model = vitgraph.build("vit_ti_16", overrides=SMALL).train()
    export_pt2(model, tmp_path / "vit.pt2")
    assert model.training


def test_a_failing_export_is_one_clear_error_naming_the_model_and_the_stage(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError(
            "Could not guard on data-dependent expression u0 > 3\n" + "deep frame\n" * 200
        )

    monkeypatch.setattr(torch.export, "export", broken)
    with pytest.raises(ExportError) as caught:
        export_pt2("vit_ti_16", tmp_path / "vit.pt2", overrides=SMALL)
    message = str(caught.value)
    assert message.startswith(
        "vit_ti_16: torch.export failed: RuntimeError: Could not guard "
        "on data-dependent expression u0 > 3"
    )
    assert len(message.splitlines()) <= 6
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_module_not_built_by_vitgraph_is_refused(tmp_path):
    with pytest.raises(ExportError, match="not compiled by vitgraph"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")


def test_cli_exports_onnx_and_pt2_and_the_files_compute_the_seeded_model(tmp_path, capsys):
    sets = ["--set", "depth=1", "--set", "image_size=32"]
    onnx_path, pt2_path = tmp_path / "vit.onnx", tmp_path / "vit.pt2"
    assert (
        main(
            [
                "export",
                "vit_ti_16",
                *sets,
                "--format",
                "onnx",
                "--out",
                str(onnx_path),
                "--batch",
                "2",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "export",
                "vit_ti_16",
                *sets,
                "--format",
                "pt2",
                "--out",
                str(pt2_path),
                "--seed",
                "3",
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"vit / vit_ti_16: wrote {onnx_path} (onnx, input Nx3x32x32)" in out
    assert f'"out": "{pt2_path}"' in out
    torch.manual_seed(3)
    model = vitgraph.build("vit_ti_16", overrides={"depth": 1, "image_size": 32}).eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(run_onnx(onnx_path, x)[0], expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(torch.export.load(pt2_path).module()(x), expected, rtol=0, atol=1e-5)


def test_cli_export_of_an_unknown_spec_exits_2_and_a_failed_export_exits_1(
    tmp_path, capsys, monkeypatch
):
    out = str(tmp_path / "x.onnx")
    assert main(["export", "vit_ti_17", "--format", "onnx", "--out", out]) == 2
    assert "no spec file, shipped spec or variant named 'vit_ti_17'" in capsys.readouterr().err

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.export, "export", broken)
    assert (
        main(
            [
                "export",
                "vit_ti_16",
                "--set",
                "depth=1",
                "--set",
                "image_size=32",
                "--format",
                "onnx",
                "--out",
                out,
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err == ("error: vit_ti_16: torch.export failed: RuntimeError: unsupported operator\n")


def test_cli_export_with_weights_exports_those_weights_not_the_seeds(tmp_path):
    sets = ["--set", "depth=1", "--set", "image_size=32"]
    weights, pt2_path = tmp_path / "w.safetensors", tmp_path / "vit.pt2"
    assert main(["build", "vit_ti_16", *sets, "--seed", "1", "--out", str(weights), "--json"]) == 0
    assert (
        main(
            [
                "export",
                "vit_ti_16",
                *sets,
                "--seed",
                "2",
                "--weights",
                str(weights),
                "--format",
                "pt2",
                "--out",
                str(pt2_path),
            ]
        )
        == 0
    )
    torch.manual_seed(1)
    model = vitgraph.build("vit_ti_16", overrides={"depth": 1, "image_size": 32}).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            torch.export.load(pt2_path).module()(x), model(x), rtol=0, atol=1e-5
        )
