"""One comparison of a converted model with its reference, shared by the sweep
(``tests/interop/sweep_timm.py``) and the audit tests: eval-mode logits in fp32, then in
float64 train-mode logits (the same seed on both sides), every parameter's gradient and,
after the train step, every buffer (BatchNorm statistics). Each is held to DESIGN.md's
tolerance, max |Δ| ≤ 1e-4 × max(1, max |reference|).

Why float64 for the train step: a gradient can be zero up to rounding (LeViT's first stem
conv ahead of train-mode BatchNorms: 5e-12 in float64) and fp32 rounding then differs
between two correct implementations by more than the gradient itself (timm's own conv
and linear LeViT modes differ by 5e-3 there in fp32)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tests.helpers import max_logit_diff

#: the reference's tensors under our keys (a converter's key map over a dict of tensors)
StateMap = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def timm_state_map(reference: nn.Module) -> StateMap:
    """How ``from_timm`` maps the reference's keys and tensors onto ours."""
    from vitgraph.interop.timm import keymap_of

    keymap = keymap_of(reference)
    return lambda state: {keymap.rename(k): keymap.convert(k, t) for k, t in state.items()}


def hf_state_map(reference: nn.Module) -> StateMap:
    """How ``from_hf`` maps the reference's keys and tensors onto ours."""
    from vitgraph.interop.hf import converter_of

    return converter_of(reference)(reference).state


def _logits(output):
    """A plain tensor, or a tuple of them (a distilled model in training)."""
    return output


def hf_logits(output):
    """An HF model's logits: its output object's, or the first of its plain tuple
    (``return_dict=False``)."""
    return output.logits if hasattr(output, "logits") else output[0]


def _weighted_sum(output) -> torch.Tensor:
    if isinstance(output, tuple | list):
        return sum(_weighted_sum(o) for o in output)  # type: ignore[return-value]
    weights = torch.linspace(-1, 1, output.shape[-1], dtype=output.dtype)
    return (output * weights).sum()


def _close(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> str | None:
    if ours.shape != theirs.shape:
        return f"{name}: shape {tuple(ours.shape)} != {tuple(theirs.shape)}"
    if not ours.is_floating_point():
        return None if torch.equal(ours, theirs) else f"{name}: values differ"
    diff = (ours - theirs).abs().max().item() if ours.numel() else 0.0
    allowed = 1e-4 * max(1.0, theirs.abs().max().item() if theirs.numel() else 0.0)
    return None if diff <= allowed else f"{name} differs by {diff:.2e} (allowed {allowed:.2e})"


def compare(
    ours: nn.Module,
    reference: nn.Module,
    state_map: StateMap,
    x: torch.Tensor,
    seed: int = 0,
    backward: bool = True,
    logits: Callable[[object], object] = _logits,
) -> list[str]:
    """Every way ``ours`` computes something other than ``reference``; [] when equal.
    ``backward=False`` compares the train-mode forward only (for a reference whose own
    backward fails); ``logits`` reads the reference's logits off its output."""
    problems: list[str] = []
    ours.eval()
    reference.eval()
    with torch.no_grad():
        diff, allowed = max_logit_diff(ours(x), logits(reference(x)))
    if not diff <= allowed:
        problems.append(f"eval logits differ by {diff:.2e} (allowed {allowed:.2e})")
    ours.double().train()
    reference.double().train()
    x = x.double()
    outputs = []
    for model in (ours, reference):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        out = model(x) if model is ours else logits(model(x))
        if backward:
            _weighted_sum(out).backward()
        outputs.append(out)
    diff, allowed = max_logit_diff(
        tuple(o.detach() for o in outputs[0]) if isinstance(outputs[0], tuple) else outputs[0],
        tuple(o.detach() for o in outputs[1]) if isinstance(outputs[1], tuple) else outputs[1],
    )
    if not diff <= allowed:
        problems.append(f"train logits differ by {diff:.2e} (allowed {allowed:.2e})")
    if not backward:
        ours.float().eval()
        reference.float().eval()
        return problems
    theirs = state_map(
        {
            k: p.grad if p.grad is not None else torch.zeros_like(p)
            for k, p in reference.named_parameters()
        }
    )
    for name, param in ours.named_parameters():
        grad = param.grad if param.grad is not None else torch.zeros_like(param)
        if name not in theirs:
            problems.append(f"gradient of {name}: no reference parameter")
        elif (problem := _close(f"gradient of {name}", grad, theirs[name])) is not None:
            problems.append(problem)
    buffers = state_map(dict(reference.state_dict()))
    for name, buffer in ours.named_buffers():
        if name in buffers and (problem := _close(name, buffer, buffers[name])) is not None:
            problems.append(problem)
    ours.float().eval()
    reference.float().eval()
    return problems
