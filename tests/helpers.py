"""Shared test helpers: re-drawing every weight before a parity check, and the parity
tolerance of DESIGN.md (max |Δ| ≤ 1e-4 × max(1, max |logits|), fp32, eval mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

#: the tests folder and the repository root, for tests anywhere in the tree
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


@torch.no_grad()
def redraw_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-draw every parameter and BatchNorm statistic so no block hides behind its init.

    Weights ~ N(0, 1/fan_in); norm weights and 1-D scales (LayerScale) ~ U(0.5, 1.5);
    biases ~ N(0, 0.1); tokens and tables ~ N(0, 0.25); random running statistics.
    """
    gen = torch.Generator().manual_seed(seed)

    def draw(shape, kind: str) -> torch.Tensor:
        if kind == "scale":
            return torch.rand(shape, generator=gen) + 0.5
        if kind == "bias":
            return torch.randn(shape, generator=gen) * 0.1
        if kind == "table":
            return torch.randn(shape, generator=gen) * 0.5
        fan_in = max(1, int(torch.Size(shape)[1:].numel()))
        return torch.randn(shape, generator=gen) / fan_in**0.5

    for module in model.modules():
        is_norm = isinstance(module, _NORMS)
        for name, param in module.named_parameters(recurse=False):
            if is_norm:
                kind = "scale" if name == "weight" else "bias"
            elif name == "bias" or name.endswith("_bias"):
                kind = "bias"
            elif param.ndim == 1:
                kind = "scale"
            elif param.shape[0] == 1:
                kind = "table"
            else:
                kind = "weight"
            param.copy_(draw(param.shape, kind).to(param.dtype))
        if _frozen_norm(module):  # frozen BatchNorm (DETR): weight and bias are buffers too
            module.weight.copy_(draw(module.weight.shape, "scale"))
            module.bias.copy_(draw(module.bias.shape, "bias"))
        if _frozen_norm(module) or (
            isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None
        ):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    return model


def _frozen_norm(module: nn.Module) -> bool:
    """A BatchNorm whose four tensors are buffers (torchvision's, HF's, vitgraph's)."""
    return {"weight", "bias", "running_mean", "running_var"} <= set(module._buffers)


def max_logit_diff(a, b) -> tuple[float, float]:
    """(max |a - b|, allowed) for logits or tuples of logits."""
    if isinstance(a, tuple | list):
        pairs = [max_logit_diff(x, y) for x, y in zip(a, b, strict=True)]
        return max(p[0] for p in pairs), min(p[1] for p in pairs)
    diff = (a - b).abs().max().item()
    allowed = 1e-4 * max(1.0, b.abs().max().item())
    return diff, allowed


def assert_same_logits(ours: nn.Module, reference: nn.Module, x: torch.Tensor) -> float:
    ours.eval()
    reference.eval()
    with torch.no_grad():
        diff, allowed = max_logit_diff(ours(x), reference(x))
    assert diff <= allowed, f"logits differ by {diff:.3e} (allowed {allowed:.3e})"
    return diff


def line_of(path: str | Path, text: str) -> int:
    """The 1-based number of the first line of ``path`` containing ``text`` — so expected
    locations follow the shipped specs when lines are added above the node."""
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} is not in {path}")


def outputs_and_grads(model: nn.Module, x: torch.Tensor, seed: int = 1):
    """One seeded forward and a backward of a fixed weighting of the outputs: the output and
    every parameter's gradient (for comparing grad checkpointing on and off)."""
    torch.manual_seed(seed)
    model.zero_grad()
    out = model(x)
    out = out if isinstance(out, torch.Tensor) else sum(out)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def checkpoint_calls(monkeypatch) -> list:
    """Record every segment ``vitgraph.model.segments`` runs under activation
    checkpointing."""
    from vitgraph.model import segments

    calls: list = []
    real = segments.checkpoint

    def spy(fn, *args, **kwargs):
        calls.append(fn)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(segments, "checkpoint", spy)
    return calls


def torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 ARGS`` on CPU, one thread a process;
    fails with the ranks' own lines (what failed), not the launcher's summary."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    done = subprocess.run(
        [*command, "--nproc_per_node=2", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    said = [line for line in done.stderr.splitlines() if "Warning" not in line]
    assert done.returncode == 0, "\n".join(said[:40] + ["..."] + said[-40:])
    return done
