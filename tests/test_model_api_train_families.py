"""A timm training step (timm's optimizer factory: AdamW with weight-decay groups, fp32)
on our model and on timm's with the same weights gives the same loss and the same
updated weights (≤1e-5), for every family with a timm twin (reduced copies)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vitgraph
from tests.test_model_api_head_families import FAMILIES, image, mapped_state, reference

timm = pytest.importorskip("timm")
from timm.optim import create_optimizer_v2  # noqa: E402


def loss_of(out, target):
    if isinstance(out, tuple):  # distilled training: both heads, averaged losses
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


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_timm_training_step_gives_timms_loss_and_weights(name):
    ref = reference(name).train()
    ours = vitgraph.from_timm(ref).train()
    before = mapped_state(ref)
    x, target = image(ref, batch=4), torch.tensor([0, 3, 9, 3])
    loss_ours, loss_ref = step(ours, x, target), step(ref, x, target)
    assert abs(loss_ours - loss_ref) <= 1e-5
    theirs = mapped_state(ref)
    assert set(theirs) == set(ours.state_dict())
    moved = max((v - before[k]).abs().max().item() for k, v in theirs.items()
                if v.is_floating_point())
    assert moved > 1e-4  # the step did update the weights
    diff = max((v - theirs[k]).abs().max().item() for k, v in ours.state_dict().items())
    assert diff <= 1e-5, diff


@pytest.mark.parametrize("name", ["pit_ti_distilled_224", "levit_128s"])
def test_distilled_training_step_on_both_heads_matches_timm(name):
    ref = reference(name).train()
    ref.set_distilled_training(True)
    ours = vitgraph.from_timm(ref).train()
    assert isinstance(ours(image(ref, batch=2)), tuple)
    x, target = image(ref, batch=4), torch.tensor([1, 2, 3, 4])
    assert abs(step(ours, x, target) - step(ref, x, target)) <= 1e-5
    theirs = mapped_state(ref)
    assert max((v - theirs[k]).abs().max().item() for k, v in ours.state_dict().items()) <= 1e-5
