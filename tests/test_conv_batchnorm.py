"""BatchNorm in the convolution family: in training the running statistics update and each
sample's output depends on its batch; in eval the statistics stay fixed and are what the
output uses (a sample gives the same logits alone or in a batch). Checked for every block
kind that holds a BatchNorm, inside small models of the four specs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vitgraph
from tests.helpers import redraw_

SMALL = {
    "levit_128s": {"image_size": 64, "depths": [1, 1, 1]},
    "cvt_13": {"image_size": 64, "depths": [1, 1, 1], "dims": [16, 32, 48], "heads": [1, 2, 3]},
    "ceit_t": {"image_size": 32, "dim": 48},
    "bot50": {"image_size": 64, "layout": [[0], [0], [0, 1], [1]]},
}
# every kind of the family whose module holds a BatchNorm, and a spec that uses it
BN_KINDS = {
    "levit_stem": "levit_128s", "levit_attention": "levit_128s",
    "levit_subsample_attention": "levit_128s", "levit_mlp": "levit_128s",
    "bn_linear_head": "levit_128s", "bn_distill_head": "levit_128s",
    "conv_attention": "cvt_13", "image_to_tokens": "ceit_t", "leff": "ceit_t",
    "bot_stem": "bot50", "bot_bottleneck": "bot50",
}


def small(variant: str) -> nn.Module:
    return redraw_(vitgraph.build(variant, overrides={**SMALL[variant], "classes": 10}))


def batchnorms(module: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {n: m for n, m in module.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("kind", sorted(BN_KINDS))
def test_block_kind_holds_a_batchnorm_in_its_spec(kind):
    graph = vitgraph.load(BN_KINDS[kind], overrides=SMALL[BN_KINDS[kind]])
    ids = [r.id for r in graph.summary().rows if r.kind == kind]
    model = vitgraph.build(BN_KINDS[kind], overrides=SMALL[BN_KINDS[kind]], device="meta")
    assert ids and all(batchnorms(model.get_submodule(i)) for i in ids)


@pytest.mark.parametrize("variant", sorted(SMALL))
def test_training_updates_every_running_statistic_and_mixes_the_batch(variant):
    model = small(variant).train()
    norms = batchnorms(model)
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
def test_eval_uses_the_running_statistics_and_leaves_them_alone(variant):
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
    # and they matter: other statistics give other logits
    for m in norms.values():
        m.running_mean.add_(0.5)
    with torch.no_grad():
        assert not torch.allclose(logits(model, x[:1]), alone, atol=1e-4)
