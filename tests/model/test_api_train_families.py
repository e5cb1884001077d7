"""A timm training step (timm's optimizer factory: AdamW with weight-decay groups, fp32)
on our model and on timm's with the same weights gives the same loss and the same
updated weights (≤1e-5), for every family with a timm twin (reduced copies)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vitgraph
from tests.model.test_api_families import (
    FAMILIES,
    conversion_of,
    image,
    mapped_state,
    reference,
)

timm = pytest.importorskip("timm")
from timm.optim import create_optimizer_v2  # noqa: E402


def loss_of(out, target):
    if isinstance(out, tuple):  # distilled training: both heads, averaged losses
        return sum(F.cross_entropy(o, target) for o in out) / len(out)
    return F.cross_entropy(out, target)


def step(model, x, target, outputs=1):
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.05}
    out = model(x)
    assert len(out) == outputs if outputs > 1 else isinstance(out, torch.Tensor)
    loss = loss_of(out, target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def twins_for_training(name: str, distilled: bool = False):
    ref = reference(name, drop_path_rate=0.0).train()  # no stochastic depth: no RNG to align
    if distilled:
        ref.set_distilled_training(True)
    return vitgraph.from_timm(ref).train(), ref


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_timm_training_step_gives_timms_loss_and_weights(name):
    """fp32: the same loss and gradients. The weights after the step are compared in
    float64: on gradients that are zero in exact arithmetic (key biases: softmax ignores a
    shift shared by all keys) fp32 leaves rounding noise of ~1e-9 in both models, and
    AdamW's first step divides the gradient by its own magnitude, turning that noise into
    updates of ±lr whose sign is chance; in float64 the noise is ~1e-17, below AdamW's
    eps, and the comparison holds to 1e-5."""
    ours, ref = twins_for_training(name)
    start_ours, start_ref = clone(ours.state_dict()), clone(ref.state_dict())
    x, target = image(ref, batch=4), torch.tensor([0, 3, 9, 3])
    losses = [loss_of(model(x), target) for model in (ours, ref)]
    assert abs(losses[0].item() - losses[1].item()) <= 1e-5
    for loss in losses:
        loss.backward()
    theirs = mapped_grads(ref)
    for n, p in ours.named_parameters():  # fp32 rounding: relative to the gradient's scale
        scale = max(1.0, theirs[n].abs().max().item())
        assert (p.grad - theirs[n]).abs().max().item() <= 1e-5 * scale, n

    ours.load_state_dict(start_ours)
    ref.load_state_dict(start_ref)
    ours, ref, x = ours.double(), ref.double(), x.double()
    loss_ours, loss_ref = step(ours, x, target), step(ref, x, target)
    assert abs(loss_ours - loss_ref) <= 1e-5
    theirs = mapped_state(ref)
    assert set(theirs) == set(ours.state_dict())
    before = {k: v.double() if v.is_floating_point() else v for k, v in start_ours.items()}
    moved = max(
        (v - before[k]).abs().max().item() for k, v in theirs.items() if v.is_floating_point()
    )
    assert moved > 1e-4  # the step did update the weights
    diff = max((v - theirs[k]).abs().max().item() for k, v in ours.state_dict().items())
    assert diff <= 1e-5, diff


def clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def mapped_grads(ref: torch.nn.Module) -> dict[str, torch.Tensor]:
    conversion = conversion_of(ref)
    return {conversion.rename(n): conversion.convert(n, p.grad) for n, p in ref.named_parameters()}


@pytest.mark.parametrize("name", ["pit_ti_distilled_224", "levit_128s"])
def test_distilled_training_step_on_both_heads_matches_timm(name):
    ours, ref = twins_for_training(name, distilled=True)
    ours, ref = ours.double(), ref.double()
    x, target = image(ref, batch=4).double(), torch.tensor([1, 2, 3, 4])
    assert abs(step(ours, x, target, 2) - step(ref, x, target, 2)) <= 1e-5
    theirs = mapped_state(ref)
    assert max((v - theirs[k]).abs().max().item() for k, v in ours.state_dict().items()) <= 1e-5
