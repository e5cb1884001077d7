"""BatchNorm in every block kind that holds one: in training the running statistics update
and each sample's output depends on its batch; in eval the statistics stay fixed and are
what the output uses (a sample gives the same logits alone or in a batch, and other
statistics in any one kind's BatchNorms give other logits).

The kinds are enumerated, not listed: every node of every variant of every shipped spec is
looked at, and the first node of each kind is built on the meta device and searched for a
BatchNorm. A new kind with one therefore fails the coverage test until a small model below
contains it. The convolution family (BoTNet, CvT, CeiT, LeViT) is where most live; the
ResNet blocks (VT), DeepViT's re-attention and conv stem and LV-ViT's stem have one too."""

from __future__ import annotations

from functools import cache

import pytest
import torch
from torch import nn

import vitgraph
from tests.helpers import redraw_
from vitgraph.spec.catalog import variant_index

# small models that together contain every kind with a BatchNorm: variant -> overrides
SMALL = {
    "levit_128s": {"image_size": 64, "depths": [1, 1, 1]},
    "cvt_13": {"image_size": 64, "depths": [1, 1, 1], "dims": [16, 32, 48], "heads": [1, 2, 3]},
    "ceit_t": {"image_size": 32, "dim": 48},
    "bot50": {"image_size": 64, "layout": [[0], [0], [0, 1], [1]]},
    "botnet_s1_59": {
        "image_size": 64,
        "layout": [[0], [0], [0], [1, 1]],
        "widths": [64, 128, 256, 512],
    },
    "vt_r18": {"image_size": 32, "depths": [1, 1, 1], "token_dim": 64},
    "vt_r50": {"image_size": 32, "depths": [1, 1, 1], "token_dim": 64},
    "deepvit_s": {"image_size": 32, "depth": 2, "reattention_layers": 1},
    "deepvit_16b": {"image_size": 32, "depth": 1, "reattention_layers": 1},
    "lv_vit_t": {"image_size": 32, "depth": 1},
}


def batchnorms(module: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {
        n: m for n, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    }


def node_batchnorms(graph: vitgraph.Graph, node) -> bool:
    """Whether the module this node builds holds a BatchNorm (built on meta, alone)."""
    with torch.device("meta"):
        built = node.params.build(*[graph.type_of(i) for i in node.inputs])
    return isinstance(built, nn.Module) and bool(batchnorms(built))


@cache
def shipped_batchnorm_kinds() -> dict[str, str]:
    """Every kind used by a shipped variant whose module holds a BatchNorm -> a variant
    using it."""
    found, seen = {}, set()
    for variant in sorted(variant_index()):
        graph = vitgraph.load(variant)
        for node in graph.nodes:
            if node.kind not in seen:
                seen.add(node.kind)
                if node_batchnorms(graph, node):
                    found[node.kind] = variant
    return found


@cache
def kinds_in_small(variant: str) -> dict[str, list[str]]:
    """Kind -> ids of its nodes that hold a BatchNorm, in the small model of ``variant``."""
    graph = vitgraph.load(variant, overrides=SMALL[variant])
    kinds: dict[str, list[str]] = {}
    for node in graph.nodes:
        if node_batchnorms(graph, node):
            kinds.setdefault(node.kind, []).append(node.id)
    return kinds


def small(variant: str) -> nn.Module:
    return redraw_(vitgraph.build(variant, overrides={**SMALL[variant], "classes": 10}))


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


def test_every_shipped_kind_with_a_batchnorm_is_in_a_small_model_below():
    shipped = shipped_batchnorm_kinds()
    covered = {kind for variant in SMALL for kind in kinds_in_small(variant)}
    assert {"bot_bottleneck", "conv_attention", "leff", "levit_attention"} <= set(shipped)
    missing = {kind: variant for kind, variant in shipped.items() if kind not in covered}
    assert not missing, f"add a small model with these kinds to SMALL: {missing}"


@pytest.mark.parametrize("variant", sorted(SMALL))
def test_training_updates_every_running_statistic_and_mixes_the_batch(variant):
    model = small(variant).train()
    norms = batchnorms(model)
    assert norms
    before = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in norms.items()}
    size = SMALL[variant]["image_size"]
    x = torch.randn(4, 3, size, size)
    batched = logits(model, x)
    for name, m in norms.items():
        assert not torch.equal(m.running_mean, before[name][0]), name
        assert not torch.equal(m.running_var, before[name][1]), name
        assert int(m.num_batches_tracked) == 1
    alone = logits(model, torch.cat([x[:1], torch.randn(3, 3, size, size)]))
    assert not torch.allclose(batched[0], alone[0], atol=1e-4)  # batch statistics


@pytest.mark.parametrize("variant", sorted(SMALL))
def test_eval_uses_each_kinds_running_statistics_and_leaves_them_alone(variant):
    model = small(variant).eval()
    norms = batchnorms(model)
    before = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in norms.items()}
    size = SMALL[variant]["image_size"]
    x = torch.randn(4, 3, size, size)
    with torch.no_grad():
        batched = logits(model, x)
        alone = logits(model, x[:1])
    assert torch.allclose(batched[:1], alone, atol=1e-5)
    for name, m in norms.items():
        assert torch.equal(m.running_mean, before[name][0]), name
        assert torch.equal(m.running_var, before[name][1]), name
    # and each kind's statistics matter: shifting them alone changes the logits
    for kind, ids in kinds_in_small(variant).items():
        shifted = [m for i in ids for m in batchnorms(model.get_submodule(i)).values()]
        for m in shifted:
            m.running_mean.add_(0.5)
        with torch.no_grad():
            assert not torch.allclose(logits(model, x[:1]), alone, atol=1e-4), kind
        for m in shifted:
            m.running_mean.sub_(0.5)
