"""Side-by-side throughput of a vitgraph model and its reference, in one process.

Forward (inference mode) and training step (forward, cross-entropy, backward, SGD step)
images/s, measured alternately (ours, reference, ours, ...) so drift in machine load hits
both, median of ``repeats`` rounds. A ratio > 1 means vitgraph is faster.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def _forward(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def _train_step(model: nn.Module, x: torch.Tensor, classes: int) -> Callable[[], None]:
    target = torch.randint(0, classes, (x.shape[0],), device=x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)

    def run() -> None:
        out = model(x)
        if isinstance(out, tuple):
            out = sum(out) / len(out)
        loss = nn.functional.cross_entropy(out, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run


def _time(fn: Callable[[], None], iters: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def compare(
    name: str,
    ours: nn.Module,
    reference: nn.Module,
    input_shape: tuple[int, ...],
    batch: int = 8,
    repeats: int = 5,
    iters: int = 2,
    classes: int = 1000,
    device: str = "cpu",
    autocast: torch.dtype | None = None,
) -> dict[str, float]:
    """Print and return images/s of both models and the ratios (ours / reference)."""
    dev = torch.device(device)
    ours, reference = ours.to(dev), reference.to(dev)
    x = torch.randn(batch, *input_shape, device=dev)
    results: dict[str, float] = {}
    for mode in ("forward", "train"):
        for model in (ours, reference):
            model.train(mode == "train")
        runs = {
            "ours": _forward(ours, x) if mode == "forward" else _train_step(ours, x, classes),
            "ref": _forward(reference, x)
            if mode == "forward"
            else _train_step(reference, x, classes),
        }
        times: dict[str, list[float]] = {"ours": [], "ref": []}
        ctx = (
            torch.autocast(dev.type, dtype=autocast)
            if autocast is not None
            else torch.autocast(dev.type, enabled=False)
        )
        with ctx:
            for fn in runs.values():  # warm-up
                fn()
            for _ in range(repeats):
                for key, fn in runs.items():
                    times[key].append(_time(fn, iters, dev))
        ours_ips = batch / statistics.median(times["ours"])
        ref_ips = batch / statistics.median(times["ref"])
        results[f"{mode}_ours"] = ours_ips
        results[f"{mode}_ref"] = ref_ips
        results[f"{mode}_ratio"] = ours_ips / ref_ips
    precision = "fp32" if autocast is None else str(autocast).replace("torch.", "")
    print(
        f"{name:28s} {device:5s} {precision:5s} batch {batch}: "
        f"forward {results['forward_ours']:8.1f} vs {results['forward_ref']:8.1f} img/s "
        f"(x{results['forward_ratio']:.3f}); train {results['train_ours']:8.1f} vs "
        f"{results['train_ref']:8.1f} img/s (x{results['train_ratio']:.3f})",
        flush=True,
    )
    return results
