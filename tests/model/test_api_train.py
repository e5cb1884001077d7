"""A timm training step (timm's optimizer factory with weight-decay groups, fp32) on our
model and on timm's with the same weights gives the same loss and the same updated
weights (≤1e-5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vitgraph
from tests.helpers import redraw_

timm = pytest.importorskip("timm")
from timm.optim import create_optimizer_v2  # noqa: E402

TWINS = {  # one per family with a timm twin, reduced; every distinct head structure
    "vit_small_patch16_224": {},
    "deit_tiny_distilled_patch16_224": {},
    "deit3_small_patch16_224": {},  # LayerScale: gamma in the no-decay group
}


def loss_of(out, target):
    if isinstance(out, tuple):  # DeiT in training: both heads, averaged losses
        return sum(F.cross_entropy(o, target) for o in out) / len(out)
    return F.cross_entropy(out, target)


def step(model, x, target):
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.05}
    loss = loss_of(model(x), target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("name", sorted(TWINS))
def test_timm_training_step_gives_timms_loss_and_weights(name):
    reference = redraw_(
        timm.create_model(
            name, pretrained=False, depth=2, img_size=32, num_classes=10, **TWINS[name]
        )
    )
    ours = vitgraph.from_timm(reference)
    ours.train()
    reference.train()
    x, target = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 9, 3])
    loss_ours, loss_ref = step(ours, x, target), step(reference, x, target)
    assert abs(loss_ours - loss_ref) <= 1e-5
    theirs = reference.state_dict()
    worst = max((v - theirs[k]).abs().max().item() for k, v in ours.state_dict().items())
    assert worst <= 1e-5, worst


def test_built_spec_groups_decay_like_timm():
    model = vitgraph.load("deit_ti_distilled", overrides={"depth": 1, "image_size": 32}).build()
    optimizer = create_optimizer_v2(model, "adamw", weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {
        names[id(p)] for g in optimizer.param_groups if g["weight_decay"] for p in g["params"]
    }
    assert decayed == {
        "patch_embed.proj.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.proj.weight",
        "blocks.0.mlp.fc1.weight",
        "blocks.0.mlp.fc2.weight",
        "head.weight",
        "head_dist.weight",
    }
