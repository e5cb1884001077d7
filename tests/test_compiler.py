"""The compiled module: fresh per build, named like the spec, traceable, compilable,
exportable, and usable under bf16 autocast (CUDA checks skip without a GPU)."""

from __future__ import annotations

import pytest
import torch

import vitgraph

SMALL = {"image_size": 32, "patch": 8, "dim": 48, "depth": 2, "heads": 3, "classes": 7}


def small(name: str = "vit_ti_16", **extra):
    return vitgraph.load(name, overrides={**SMALL, **extra})


def test_every_build_is_a_fresh_module_and_the_same_seed_gives_the_same_weights():
    graph = small()
    torch.manual_seed(1)
    first = graph.build()
    torch.manual_seed(1)
    second = graph.build()
    assert first is not second
    for (k1, v1), (k2, v2) in zip(
        first.state_dict().items(), second.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)
    first.head.weight.data.add_(1.0)
    assert not torch.equal(first.head.weight, second.head.weight)


def test_state_dict_keys_follow_the_spec_ids():
    keys = list(small("deit_ti_distilled").build().state_dict())
    assert "blocks.1.attn.qkv.weight" in keys and "blocks.0.mlp.fc2.bias" in keys
    assert {"cls_token", "dist_token", "pos_embed", "head_dist.weight"} <= set(keys)


def test_generated_code_is_straight_line_and_reads_like_the_spec():
    code = small().build().code
    assert "blocks_1_residual2 = " in code and "for " not in code and "if " not in code


def test_drop_path_schedule_rises_linearly_over_the_layers():
    model = vitgraph.build(
        "vit_ti_16", overrides={"depth": 4, "drop_path_rate": 0.3, "image_size": 32}
    )
    rates = [getattr(model.blocks, str(i)).__dict__["_modules"].get("drop_path1") for i in range(4)]
    assert rates[0] is None  # rate 0: the identity is dropped from the graph
    assert [round(m.rate, 6) for m in rates[1:]] == [0.1, 0.2, 0.3]


@pytest.mark.parametrize("name", ["vit_ti_16", "deit_ti_distilled", "simplevit_s_16"])
def test_model_passes_fx_symbolic_trace_with_the_same_outputs(name):
    model = small(name).build().eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(traced(x), model(x))


@pytest.mark.parametrize("name", ["vit_ti_16", "deit_ti_distilled", "simplevit_s_16"])
def test_model_passes_torch_export_with_the_same_outputs(name):
    model = small(name).build().eval()
    x = torch.randn(2, 3, 32, 32)
    exported = torch.export.export(model, (x,))
    assert torch.allclose(exported.module()(x), model(x), atol=1e-5)


def test_model_passes_torch_compile_with_the_same_outputs():
    model = small().build().eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    assert torch.allclose(compiled(x), model(x), atol=1e-5)


def test_bf16_autocast_on_cpu_gives_finite_outputs_and_gradients():
    model = small().build().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 32, 32))
    out.float().mean().backward()
    assert torch.isfinite(out.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_build_on_meta_allocates_nothing_and_dtype_is_applied():
    meta = vitgraph.load("vit_l_16").build(device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())
    half = small().build(dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_backward_and_bf16_autocast():
    model = small().build(device="cuda").train()
    x = torch.randn(2, 3, 32, 32, device="cuda")
    model(x).mean().backward()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x)
    assert torch.isfinite(out.float()).all()
