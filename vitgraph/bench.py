"""Benchmarks as a user runs them (``vitgraph bench``, and every script in benchmarks/).

Throughput (images/s), latency p50/p90 of one step (ms) and peak memory, of a forward
pass (inference mode) or a training step (forward, cross-entropy, backward, SGD step),
measured alternately against a reference twin in one process (ours, reference, ours, ...)
so that drift in the machine's load hits both; a ratio > 1 means vitgraph is faster.

Peak memory is live tensor storage counted at the dispatcher (:class:`PeakMemory`), the
same counter for both models on any device (< 1: vitgraph needs less). The machine's load
from other processes is read from /proc/stat while the benchmark runs
(:class:`LoadMeter`), so a number measured on a busy machine says so.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

#: ``--dtype`` names: fp32 runs as built, the others under autocast (as mixed-precision
#: training and inference run)
DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
MODES = ("forward", "train")
#: other processes keeping this many CPUs busy make a timing unreliable
BUSY = 0.5


class BenchError(RuntimeError):
    """A benchmark that cannot run as asked (one line, with what to do instead)."""


# ------------------------------------------------------------------------ one step


def forward_step(model: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode():
            return model(x)

    return run


def train_step(model: nn.Module, x: torch.Tensor, classes: int) -> Callable[[], Any]:
    target = torch.randint(0, classes, (x.shape[0],), device=x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)

    def run() -> Any:
        out = model(x)
        if isinstance(out, tuple):  # a distilled model in training: both heads
            out = sum(out) / len(out)
        loss = nn.functional.cross_entropy(out, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return run


def step(model: nn.Module, x: torch.Tensor, mode: str, classes: int = 1000) -> Callable[[], Any]:
    """One forward (``mode="forward"``, eval, inference mode) or training step."""
    model.train(mode == "train")
    return forward_step(model, x) if mode == "forward" else train_step(model, x, classes)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def latencies(fn: Callable[[], Any], iters: int, device: torch.device) -> list[float]:
    """Seconds of each of ``iters`` calls of ``fn``."""
    out = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - start)
    return out


def alternate(
    runs: dict[str, Callable[[], Any]], repeats: int, iters: int, device: torch.device
) -> dict[str, list[float]]:
    """Per-call seconds of each run, measured in ``repeats`` rounds of ``iters`` calls
    each, the runs taking turns within a round (after one warm-up call each)."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            times[key] += latencies(fn, iters, device)
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


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
        self._live[key] = (weakref.ref(storage, self._freer(key)), size)
        self.current += size
        self.peak = max(self.peak, self.current)

    def _freer(self, key: int) -> Callable[[Any], None]:
        """The weakref callback that forgets storage ``key``."""
        return lambda _: self._free(key)

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


def peak_bytes(fn: Callable[[], Any], model: nn.Module, x: torch.Tensor) -> int:
    """Peak live tensor bytes of one call of ``fn`` (after a warm-up call), counting the
    model's parameters, buffers and the input as live; gradients start as None."""
    fn()
    for p in model.parameters():
        p.grad = None
    gc.collect()
    counter = PeakMemory()
    counter.track(x, *model.parameters(), *model.buffers())
    with counter:
        fn()
    return counter.peak


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
    model = model.to(dev)
    x = torch.randn(batch, *input_shape, device=dev)
    return peak_bytes(step(model, x, "train", classes), model, x)


# ------------------------------------------------------------------------ the machine


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads explicitly (None or 0: one per CPU) and return them."""
    count = threads or os.cpu_count() or 1
    torch.set_num_threads(count)
    return count


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat (None where it is missing)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


@dataclass
class Load:
    """What other processes did to the machine while a benchmark ran."""

    cpus: int
    #: CPUs kept busy by other processes on average (None: no /proc/stat)
    others: float | None
    seconds: float

    @property
    def busy(self) -> bool:
        return self.others is not None and self.others >= BUSY

    def describe(self) -> str:
        if self.others is None:
            return "machine load unknown (no /proc/stat)"
        text = f"other processes kept {self.others:.1f} of {self.cpus} CPUs busy"
        if self.busy:
            text += " (from /proc/stat): timings are disturbed, compare ratios only"
        return text


class LoadMeter:
    """Reads /proc/stat and this process's CPU time around a benchmark: the busy CPU time
    that is not ours, over the wall time, is the other processes' load."""

    def __enter__(self) -> LoadMeter:
        self._start = (_cpu_jiffies(), _own_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc: object) -> None:
        jiffies, own, wall = _cpu_jiffies(), _own_seconds(), time.perf_counter()
        before, own0, wall0 = self._start
        seconds = max(wall - wall0, 1e-9)
        others = None
        if jiffies is not None and before is not None:
            hertz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            busy = (jiffies[0] - before[0]) / hertz
            others = max(0.0, (busy - (own - own0)) / seconds)
        self.load = Load(os.cpu_count() or 1, others, seconds)


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


#: multiply-adds x 2 of the ``matmul_step`` product
MATMUL_FLOPS = 2 * 2048**3


def matmul_step(size: int = 2048) -> Callable[[], Any]:
    """A ``size``² fp32 matmul on the CPU (autocast off), to time in turns with a model:
    its GFLOP/s is the machine's ceiling for a model's at the same moment, so a burst
    from another process slows both alike."""
    a, b = torch.randn(size, size), torch.randn(size, size)

    def run() -> Any:
        with torch.autocast("cpu", enabled=False):
            return a @ b

    return run


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a ``size``² fp32 matmul on the CPU with the current threads (the best
    of ``repeats``): the machine's own ceiling for a model's GFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(latencies(lambda: a @ b, repeats, torch.device("cpu")))
    return 2 * size**3 / best / 1e9


# ------------------------------------------------------------------------ results


@dataclass
class Measurement:
    """One model at one setting."""

    model: str
    side: str  # "vitgraph" or the reference's library
    mode: str
    batch: int
    dtype: str
    optimized: bool
    compiled: bool
    images_per_s: float
    p50_ms: float
    p90_ms: float
    peak_mib: float | None = None
    compile_s: float | None = None
    params: int | None = None
    gmacs: float | None = None  # per image
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gflops(self) -> float | None:
        """Model GFLOP/s (2 × MACs × images/s), forward only."""
        if self.gmacs is None or self.mode != "forward":
            return None
        return 2 * self.gmacs * self.images_per_s

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["gflops"] = self.gflops
        return out


def summarize_times(seconds: list[float], batch: int) -> tuple[float, float, float]:
    """(images/s at the median step, p50 ms, p90 ms)."""
    median = statistics.median(seconds)
    return batch / median, median * 1e3, percentile(seconds, 0.9) * 1e3
