"""Each inference pass on its own (vitgraph.passes): what its policy selects from the
kinds' hooks, what its mechanism leaves in the model, and the same outputs as the model
as built (weights and BatchNorm statistics re-drawn first: a zero-initialised BatchNorm
or a LayerScale at 1e-5 hides a wrong fold)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import vitgraph
from tests.export_sizes import reduced
from tests.helpers import redraw_
from vitgraph.passes import (
    drop_eval_identities,
    fold_batchnorm,
    fold_channel_scales,
    fold_constant_scales,
    fuse_projections,
    precompute_constants,
)
from vitgraph.passes.inference_passes import finish
from vitgraph.passes.memory_format import PointwiseConv2d, choose_memory_format, map_convs
from vitgraph.passes.rewrite import fold_constants, traced

#: fp32 outputs of the optimized model within this much of the built one's (relative to
#: the largest logit)
RELATIVE = 1e-5


def built(family: str, variant: str, **overrides) -> tuple[nn.Module, torch.Tensor]:
    graph = vitgraph.load(variant, overrides={**reduced(family, variant), **overrides})
    torch.manual_seed(0)
    model = redraw_(graph.build()).eval()
    x = torch.randn(2, *graph.input_shape, generator=torch.Generator().manual_seed(1))
    return model, x


def assert_same(model: nn.Module, changed: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        expected, got = model(x), changed(x)
    allowed = RELATIVE * max(1.0, expected.abs().max().item())
    assert (got - expected).abs().max().item() <= allowed


def apply(model: nn.Module, *passes) -> tuple[nn.Module, list[int]]:
    out = copy.deepcopy(model).eval()
    counts = [step(out) for step in passes]
    finish(out)
    return out, counts


def modules_of(model: nn.Module, kind: type) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, kind)]


def test_drop_eval_identities_removes_drop_path_nodes_and_dropout_modules():
    model, x = built("pit", "pit_ti", drop_path_rate=0.1, dropout=0.1)
    nodes = [n for n in model.graph.nodes if "drop" in str(n.target)]  # pos_drop, drop_path
    inner = [m for m in modules_of(model, nn.Dropout) if m not in {str(n.target) for n in nodes}]
    # pos_drop and both drop-paths of stages 1 and 2 (the schedule starts at rate 0)
    assert len(nodes) == 5 and inner  # the rest is dropout inside attention and MLP
    out, (count,) = apply(model, drop_eval_identities)
    assert [n for n in out.graph.nodes if "drop" in str(n.target)] == []
    assert modules_of(out, nn.Dropout) == []
    assert count == len(nodes) + len(inner)
    assert_same(model, out, x)


def test_fold_batchnorm_leaves_no_batchnorm_in_levit():
    model, x = built("levit", "levit_128s")
    norms = modules_of(model, nn.modules.batchnorm._BatchNorm)
    out, (count,) = apply(model, fold_batchnorm)
    assert count == len(norms)
    assert modules_of(out, nn.modules.batchnorm._BatchNorm) == []
    assert_same(model, out, x)


def test_the_batchnorm_after_botnet_attention_folds_into_the_value_rows():
    model, x = built("botnet", "botnet26t_256")
    attention = [n for n, m in model.named_modules() if hasattr(m, "post_attn")]
    assert attention
    out, _ = apply(model, fold_batchnorm)
    for name in attention:
        block = out.get_submodule(name)
        assert isinstance(block.post_attn, nn.Identity)
        assert block.self_attn.qkv.bias is not None  # the shift went into v's bias
    assert_same(model, out, x)


def test_fold_batchnorm_of_every_conv_family_keeps_the_outputs():
    for family, variant in [
        ("cvt", "cvt_13"),
        ("ceit", "ceit_t"),
        ("vt", "vt_r18"),
        ("deepvit", "deepvit_s"),
        ("lvvit", "lv_vit_t"),
        ("refiner", "refiner_vit_s"),
    ]:
        model, x = built(family, variant)
        out, (count,) = apply(model, fold_batchnorm)
        assert count > 0, variant
        assert_same(model, out, x)


def test_fold_channel_scales_folds_cait_layerscale_into_the_projections():
    model, x = built("cait", "cait_xxs24")
    scales = [n for n in model.graph.nodes if str(n.target).endswith((".ls1", ".ls2"))]
    out, (count,) = apply(model, fold_channel_scales)
    assert count == len(scales) == 4
    assert [n for n in out.graph.nodes if str(n.target).endswith((".ls1", ".ls2"))] == []
    assert_same(model, out, x)


def test_fold_channel_scales_folds_residual_divisors_after_the_drop_path_is_gone():
    model, x = built("lvvit", "lv_vit_t")
    out, (dropped, count) = apply(model, drop_eval_identities, fold_channel_scales)
    assert count == 2  # skip_lam on the attention and on the MLP branch of the one layer
    assert "divide" not in out.code
    assert_same(model, out, x)


SHARED = """
vitgraph: 1
name: shared
input: {channels: 3, size: 32}
graph:
  - {id: embed, kind: patch_embed, patch: 16, dim: 32}
  - {id: attn, kind: mhsa, heads: 2}
  - {id: ls, kind: layer_scale, init: 0.5}
  - {id: other, kind: add, inputs: [attn, ls]}
  - {id: pool, kind: mean_pool}
  - {id: head, kind: linear_head, classes: 4}
"""


def test_a_scale_whose_projection_output_is_read_elsewhere_stays():
    graph = vitgraph.load("shared", text=SHARED)
    model = redraw_(graph.build()).eval()
    out, (count,) = apply(model, fold_channel_scales)
    assert count == 0 and "ls" in {str(n.target) for n in out.graph.nodes}
    assert_same(model, out, torch.randn(2, 3, 32, 32))


def test_fold_constant_scales_moves_levit_attention_scale_into_the_query_rows():
    model, x = built("levit", "levit_128s")
    out, (_, count) = apply(model, fold_batchnorm, fold_constant_scales)
    attentions = [m for m in out.modules() if hasattr(m, "attention_biases")]
    assert count == len(attentions) == 5 and all(m.scale == 1.0 for m in attentions)
    assert_same(model, out, x)
    # a scale before a BatchNorm would be normalised away: nothing folds until they are
    assert apply(model, fold_constant_scales)[1] == [0]


def test_fold_constant_scales_folds_cait_talking_heads_scale_into_qkv():
    model, x = built("cait", "cait_xxs24")
    out, (count,) = apply(model, fold_constant_scales)
    assert count == 1 and out.get_submodule("blocks.0.attn").scale == 1.0
    assert_same(model, out, x)


def test_fuse_projections_runs_class_attention_k_and_v_as_one_linear():
    model, x = built("cait", "cait_xxs24")
    out, (count,) = apply(model, fuse_projections)
    assert count == 1
    attn = out.get_submodule("blocks_token_only.0.attn")
    assert isinstance(attn.k_v, nn.Linear) and not hasattr(attn, "k")
    assert attn.k_v.out_features == 2 * attn.q.out_features
    assert_same(model, out, x)


def test_precompute_constants_stores_levit_and_swin_bias_tables():
    for family, variant in [("levit", "levit_128s"), ("swin", "swin_t")]:
        model, x = built(family, variant)
        out, (count,) = apply(model, precompute_constants)
        stored = [n for n, _ in out.named_buffers() if "_precomputed" in n]
        assert count == len(stored) > 0, variant
        assert "relative_position_index" not in out.code and "attention_bias_idxs" not in str(
            [m.code for m in out.modules() if hasattr(m, "code")]
        )
        assert_same(model, out, x)


class _Table(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(5, 2))
        self.register_buffer("index", torch.tensor([4, 0, 2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.table[self.index].t()  # (2, 3): a gather of weights only
        noise = torch.rand_like(bias)  # random: never computed once
        return x + bias + noise * 0


def test_fold_constants_computes_the_weight_only_values_once_and_never_a_random_draw():
    module = traced(_Table())
    assert fold_constants(module) == 1
    assert "getitem" not in module.code and "rand_like" in module.code
    torch.testing.assert_close(module._precomputed0, module.table[module.index].t())


def test_channels_last_keeps_the_outputs_and_lays_out_the_conv_weights():
    model, x = built("vt", "vt_r18")
    out = copy.deepcopy(model)
    assert choose_memory_format(out, "channels_last") == "channels_last"
    conv = next(m for m in out.modules() if type(m) is nn.Conv2d)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert_same(model, out, x)


def test_channels_last_runs_every_1x1_conv_as_a_matmul_over_channels():
    model, x = built("ceit", "ceit_t")
    pointwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    out = copy.deepcopy(model)
    choose_memory_format(out, "channels_last")
    assert len(pointwise) == 24  # LeFF's two per layer
    assert sum(isinstance(m, PointwiseConv2d) for m in out.modules()) == 24
    assert_same(model, out, x)
    with torch.no_grad():
        y = torch.randn(2, 8, 5, 5)
        conv = nn.Conv2d(8, 4, 1)
        fast = PointwiseConv2d(8, 4, 1)
        fast.load_state_dict(conv.state_dict())
        torch.testing.assert_close(fast(y), conv(y))
        assert fast(y).is_contiguous(memory_format=torch.channels_last)


def test_auto_memory_format_keeps_a_model_whose_only_conv_cuts_patches_without_timing_it():
    model, _ = built("vit", "vit_ti_16")
    assert map_convs(model) == []
    assert choose_memory_format(model, "auto") == "contiguous"
    # CeiT's stem and LeFF convs run over feature maps: auto times both formats
    assert len(map_convs(built("ceit", "ceit_t")[0])) == 1 + 12 * 3


def test_optimize_returns_an_inference_copy_and_leaves_the_model_as_it_was():
    model, x = built("levit", "levit_128s")
    norms = len(modules_of(model, nn.modules.batchnorm._BatchNorm))
    out = vitgraph.optimize(model, memory_format="contiguous")
    assert len(modules_of(model, nn.modules.batchnorm._BatchNorm)) == norms
    assert out.vitgraph_optimized["fold_batchnorm"] == norms
    assert_same(model, out, x)
    with pytest.raises(RuntimeError, match="optimized for inference"):
        out.train()
    model.train()  # the model it was made from still trains


def test_optimize_refuses_a_module_vitgraph_did_not_compile():
    with pytest.raises(TypeError, match="not a Linear"):
        vitgraph.optimize(nn.Linear(2, 2))


def test_graph_build_with_optimize_is_build_then_optimize():
    graph = vitgraph.load("cait_xxs24", overrides=reduced("cait", "cait_xxs24"))
    torch.manual_seed(3)
    out = graph.build(optimize=True)
    torch.manual_seed(3)
    model = graph.build().eval()
    assert out.vitgraph_optimized["fold_channel_scales"] == 4
    assert_same(model, out, torch.randn(2, *graph.input_shape))
