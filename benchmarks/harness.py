"""Side-by-side throughput of a vitgraph model and its reference, in one process.

The measuring itself lives in the package (``vitgraph.bench``: the steps, the alternating
loop, ``PeakMemory``, the machine's load), shared with ``vitgraph bench``; this module
keeps the scripts' entry points. Forward (inference mode) and training step (forward,
cross-entropy, backward, SGD step) images/s, measured alternately (ours, reference, ours,
...) so drift in machine load hits both, median of ``repeats`` rounds. A ratio > 1 means
vitgraph is faster.

Peak memory of a training step (``compare(..., memory=True)`` or ``compare_memory``): live
tensor bytes counted at the dispatcher by :class:`PeakMemory`, the same counter for both
models, on any device. There a ratio < 1 means vitgraph needs less.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from vitgraph.bench import (
    LoadMeter,
    PeakMemory,
    alternate,
    set_threads,
    step,
    train_step_peak_bytes,
)
from vitgraph.bench import autocast as autocast_context

__all__ = [
    "PeakMemory",
    "bench_args",
    "compare",
    "compare_memory",
    "compare_timm_twins",
    "train_step_peak_bytes",
]


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
    memory: bool = False,
    modes: tuple[str, ...] = ("forward", "train"),
) -> dict[str, float]:
    """Print and return images/s of both models and the ratios (ours / reference) for
    each of ``modes``; ``memory=True`` adds the peak bytes of a training step
    (``compare_memory``'s keys); ``autocast``: the dtype to run under autocast."""
    dev = torch.device(device)
    ours, reference = ours.to(dev), reference.to(dev)
    x = torch.randn(batch, *input_shape, device=dev)
    results: dict[str, float] = {}
    with LoadMeter() as meter, autocast_context(dev, autocast):
        for mode in modes:
            runs = {"ours": step(ours, x, mode, classes), "ref": step(reference, x, mode, classes)}
            times = alternate(runs, repeats, iters, dev)
            for key in runs:
                results[f"{mode}_{key}"] = batch / statistics.median(times[key])
            results[f"{mode}_ratio"] = results[f"{mode}_ours"] / results[f"{mode}_ref"]
    precision = "fp32" if autocast is None else str(autocast).replace("torch.", "")
    parts = [
        f"{mode} {results[f'{mode}_ours']:8.1f} vs {results[f'{mode}_ref']:8.1f} img/s "
        f"(x{results[f'{mode}_ratio']:.3f})"
        for mode in modes
    ]
    print(
        f"{name:28s} {device:5s} {precision:5s} batch {batch}: {'; '.join(parts)} "
        f"[{meter.load.describe()}]",
        flush=True,
    )
    if memory:
        results.update(compare_memory(name, ours, reference, input_shape, batch, classes, device))
    return results


def compare_memory(
    name: str,
    ours: nn.Module,
    reference: nn.Module,
    input_shape: tuple[int, ...],
    batch: int = 8,
    classes: int = 1000,
    device: str = "cpu",
) -> dict[str, float]:
    """Print and return the peak bytes of a training step of both models and the ratio
    (ours / reference: < 1 means vitgraph needs less)."""
    results: dict[str, float] = {
        "train_peak_ours": train_step_peak_bytes(ours, input_shape, batch, classes, device),
        "train_peak_ref": train_step_peak_bytes(reference, input_shape, batch, classes, device),
    }
    results["train_peak_ratio"] = results["train_peak_ours"] / results["train_peak_ref"]
    mib = 2**20
    print(
        f"{name:28s} {device:5s} fp32  batch {batch}: train-step peak "
        f"{results['train_peak_ours'] / mib:8.1f} vs {results['train_peak_ref'] / mib:8.1f} MiB "
        f"(x{results['train_peak_ratio']:.3f})",
        flush=True,
    )
    return results


def bench_args(models: list[str] | None = None) -> argparse.Namespace:
    """The command line every benchmark shares (device, bf16, batch, repeats, threads, and
    ``--models`` when the script has a default list); applies threads and the seed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: one per CPU)")
    if models is not None:
        parser.add_argument("--models", nargs="*", default=models)
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    return args


def compare_timm_twins(args: argparse.Namespace) -> None:
    """Each timm model of ``args.models`` vs its ``from_timm`` twin (same weights)."""
    import timm

    import vitgraph

    for name in args.models:
        reference = timm.create_model(name, pretrained=False)
        ours = vitgraph.from_timm(reference)
        compare(
            name,
            ours,
            reference,
            (3, 224, 224),
            batch=args.batch,
            repeats=args.repeats,
            device=args.device,
            autocast=torch.bfloat16 if args.bf16 else None,
        )
