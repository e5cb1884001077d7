"""Side-by-side throughput of a vitgraph model and its reference, in one process.

Forward (inference mode) and training step (forward, cross-entropy, backward, SGD step)
images/s, measured alternately (ours, reference, ours, ...) so drift in machine load hits
both, median of ``repeats`` rounds. A ratio > 1 means vitgraph is faster.

Peak memory of a training step (``compare(..., memory=True)`` or ``compare_memory``): live
tensor bytes counted at the dispatcher by :class:`PeakMemory`, the same counter for both
models, on any device. There a ratio < 1 means vitgraph needs less.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import weakref
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


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
    memory: bool = False,
) -> dict[str, float]:
    """Print and return images/s of both models and the ratios (ours / reference);
    ``memory=True`` adds the peak bytes of a training step (``compare_memory``'s keys)."""
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
    if memory:
        results.update(compare_memory(name, ours, reference, input_shape, batch, classes, device))
    return results


# ------------------------------------------------------------------------ peak memory


class PeakMemory(TorchDispatchMode):
    """Peak bytes of live tensor storage, counted at the dispatcher, on any device.

    Every storage an op returns is counted from its creation until it is freed (a weak
    reference's callback); storages that exist beforehand (parameters, the input) are
    counted through :meth:`track`. Views and in-place results share a storage and count
    once. Kernel workspaces that never become tensors are not seen, on either side of a
    comparison. The same counter runs on CPU, where ``torch.cuda.max_memory_allocated``
    has no equivalent.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: dict[int, tuple[weakref.ref, int]] = {}

    def track(self, *tensors: torch.Tensor) -> None:
        """Count tensors that exist already (parameters, buffers, inputs)."""
        for tensor in tensors:
            self._add(tensor)

    def _add(self, tensor: torch.Tensor) -> None:
        if tensor.device.type == "meta":
            return
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self._live:
            return
        size = storage.nbytes()
        # torch keeps a storage's Python object alive as long as the storage itself, so
        # the callback fires when the memory is released
        self._live[key] = (weakref.ref(storage, lambda _, key=key: self._free(key)), size)
        self.current += size
        self.peak = max(self.peak, self.current)

    def _free(self, key: int) -> None:
        entry = self._live.pop(key, None)
        if entry is not None:
            self.current -= entry[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self._add(leaf)
        return out


def train_step_peak_bytes(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch: int = 8,
    classes: int = 1000,
    device: str = "cpu",
) -> int:
    """Peak live tensor bytes of one training step (forward, cross-entropy, backward, SGD
    step) from gradients set to None: parameters, buffers and the batch count as live."""
    dev = torch.device(device)
    model = model.to(dev).train()
    x = torch.randn(batch, *input_shape, device=dev)
    step = _train_step(model, x, classes)
    step()  # warm-up outside the counter (lazy state, first-call caches)
    for p in model.parameters():
        p.grad = None
    gc.collect()
    counter = PeakMemory()
    counter.track(x, *model.parameters(), *model.buffers())
    with counter:
        step()
    return counter.peak


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
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    if models is not None:
        parser.add_argument("--models", nargs="*", default=models)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
