"""What ``vitgraph bench`` runs: a model named as a user names it (a spec, a variant, a
timm model), its reference twin, the settings swept (mode, batch, dtype, optimize,
compile), and a family's variants as a table and a Pareto picture.

Twins carry the same weights where a converter exists (``from_timm``, ``from_hf``): the
timm model is built, and ours converted from it. The tables below name, for a shipped
variant, the reference model of the same architecture (a variant has one name, the
reference another: ``vit_s_16`` is timm's ``vit_small_patch16_224``).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vitgraph.bench import (
    DTYPES,
    MATMUL_FLOPS,
    MODES,
    BenchError,
    LoadMeter,
    Measurement,
    alternate,
    autocast,
    matmul_step,
    peak_bytes,
    step,
    summarize_times,
)
from vitgraph.errors import SpecError
from vitgraph.graph import Graph
from vitgraph.passes import compile_model
from vitgraph.passes import optimize as optimize_model
from vitgraph.pipeline import load
from vitgraph.shapes import Image

#: shipped variant -> the timm model of the same architecture
TIMM_TWINS = {
    "vit_ti_16": "vit_tiny_patch16_224",
    "vit_s_16": "vit_small_patch16_224",
    "vit_b_16": "vit_base_patch16_224",
    "deit_ti": "deit_tiny_patch16_224",
    "deit_s": "deit_small_patch16_224",
    "deit_ti_distilled": "deit_tiny_distilled_patch16_224",
    "pit_s": "pit_s_224",
    "twins_svt_s": "twins_svt_small",
    "cait_xxs24": "cait_xxs24_224",
    "swin_t": "swin_tiny_patch4_window7_224",
    "levit_128s": "levit_128s",
    "crossvit_9": "crossvit_9_240",
    "botnet26t_256": "botnet26t_256",
    "tnt_s": "tnt_s_patch16_224",
}
#: shipped variant -> (HF config class, HF model class, config kwargs), built offline
HF_TWINS = {
    "cvt_13": ("CvtConfig", "CvtForImageClassification", {"num_labels": 1000}),
    "pvt_tiny": ("PvtConfig", "PvtForImageClassification", {"num_labels": 1000}),
}
#: the key of the matmul timed with the models (its GFLOP/s: the machine's ceiling then)
MATMUL = "matmul 2048^2"
#: what ``--against`` may name
AGAINST = ("timm", "hf", "plain")
MISSING = {
    "timm": "timm is not installed: pip install 'vitgraph[timm]'",
    "hf": "transformers is not installed: pip install 'vitgraph[hf]'",
    "plot": "drawing the plot needs matplotlib: pip install 'vitgraph[plot]'",
}


class HFLogits(nn.Module):
    """An HF classifier returning its logits tensor (HF returns an output object)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


@dataclass
class Pair:
    """Our model and its reference twin (None without ``--against``)."""

    label: str
    ours: nn.Module
    reference: nn.Module | None
    library: str | None
    input_shape: tuple[int, ...]
    same_weights: bool
    graph: Graph


def from_timm(model: nn.Module) -> nn.Module:
    from vitgraph.interop.timm import from_timm as convert

    return convert(model)


def _timm() -> Any:
    try:
        import timm
    except ImportError as exc:
        raise BenchError(MISSING["timm"]) from exc
    return timm


def _graph_of(model: nn.Module) -> Graph:
    graph = getattr(model, "vitgraph_graph", None)
    assert isinstance(graph, Graph)
    return graph


def resolve(
    name: str,
    variant: str | None = None,
    overrides: dict[str, Any] | None = None,
    against: str | None = None,
    seed: int = 0,
) -> Pair:
    """``name`` (a spec file, a shipped spec or variant, or a timm model) as our model and,
    with ``against``, its twin: ``timm`` or ``hf`` (the reference library's model), or
    ``plain`` (our model as built, for timing ``--optimize`` or ``--compile`` against it)."""
    torch.manual_seed(seed)
    if against == "timm":
        return _timm_pair(name, variant)
    if against == "hf":
        return _hf_pair(name, variant)
    if against not in (None, "plain"):
        raise BenchError(f"--against takes {', '.join(AGAINST)}, not {against!r}")
    try:
        graph = load(name, variant, overrides or {})
    except SpecError:
        timm = _timm() if _is_timm_name(name) else None
        if timm is None:
            raise
        ours = from_timm(timm.create_model(name, pretrained=False))
        graph = _graph_of(ours)
        twin = copy.deepcopy(ours) if against == "plain" else None
        return Pair(name, ours, twin, against, graph.input_shape, True, graph)
    ours = graph.build()
    twin = copy.deepcopy(ours) if against == "plain" else None  # as built: no optimize
    label = graph.variant or graph.name
    return Pair(label, ours, twin, against, graph.input_shape, True, graph)


def _is_timm_name(name: str) -> bool:
    try:
        import timm
    except ImportError:
        return False
    return bool(timm.is_model(name))


def _variant_name(name: str, variant: str | None) -> str | None:
    try:
        graph = load(name, variant)
    except SpecError:
        return None
    return graph.variant


def _timm_pair(name: str, variant: str | None) -> Pair:
    timm = _timm()
    shipped = _variant_name(name, variant)
    timm_name = name if timm.is_model(name) and variant is None else TIMM_TWINS.get(shipped or "")
    if timm_name is None:
        raise BenchError(
            f"no timm twin known for {name}: name the timm model itself "
            f"(vitgraph bench vit_small_patch16_224 --against timm)"
        )
    reference = timm.create_model(timm_name, pretrained=False)
    ours = from_timm(reference)  # the same architecture with the same weights
    shape = tuple(reference.pretrained_cfg["input_size"])
    return Pair(shipped or timm_name, ours, reference, "timm", shape, True, _graph_of(ours))


def _hf_pair(name: str, variant: str | None) -> Pair:
    from vitgraph.interop.hf import from_hf

    shipped = _variant_name(name, variant)
    if shipped not in HF_TWINS:
        raise BenchError(f"no HF transformers twin known for {name} (known: {', '.join(HF_TWINS)})")
    try:
        import transformers
    except ImportError as exc:
        raise BenchError(MISSING["hf"]) from exc
    config, model_class, kwargs = HF_TWINS[shipped]
    hf = getattr(transformers, model_class)(getattr(transformers, config)(**kwargs)).eval()
    try:
        ours, same = from_hf(hf), True
    except SpecError:  # no converter: the shipped variant, its own random weights
        ours, same = load(shipped).build(), False
    graph = _graph_of(ours)
    return Pair(shipped, ours, HFLogits(hf), "hf", graph.input_shape, same, graph)


# ------------------------------------------------------------------------ measuring


def measure(
    pair: Pair,
    *,
    mode: str = "forward",
    batch: int = 8,
    dtype: str = "fp32",
    optimize: bool = False,
    compile: bool = False,
    repeats: int = 5,
    iters: int = 2,
    device: str = "cpu",
    memory: bool = True,
) -> tuple[list[Measurement], Any]:
    """Time our model (and its twin, alternating) at one setting; returns the
    measurements and the machine's load over the run."""
    if mode not in MODES:
        raise BenchError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if dtype not in DTYPES:
        raise BenchError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if optimize and mode == "train":
        raise BenchError("--optimize makes an inference-only model: use it with --mode forward")
    if not isinstance(pair.graph.input_type, Image):  # the loss and twins are a classifier's
        raise BenchError(
            f"bench times image models; {pair.graph.name} takes {pair.graph.input_type} "
            "(time a generative model's sampling with benchmarks/bench_sampling.py)"
        )
    dev = torch.device(device)
    x = torch.randn(batch, *pair.input_shape, device=dev)
    ours = pair.ours.to(dev).train(mode == "train")
    if optimize:
        ours = optimize_model(ours, example=x)
    models = {"vitgraph": ours}
    if pair.reference is not None:
        models[pair.library or "reference"] = pair.reference.to(dev)
    runs, compile_s, peaks = {}, {}, {}
    with autocast(dev, DTYPES[dtype]), LoadMeter() as meter:
        for side, model in models.items():
            run = step(model, x, mode)
            compiling = compile and (side == "vitgraph" or pair.library != "plain")
            if memory and not compiling:
                peaks[side] = peak_bytes(run, model, x) / 2**20
            if compiling:
                model = compile_model(model)
                run = step(model, x, mode)
                start = time.perf_counter()
                run()  # the compilation, timed apart from the run
                compile_s[side] = time.perf_counter() - start
            runs[side] = run
        if dev.type == "cpu" and mode == "forward":
            runs[MATMUL] = matmul_step()
        times = alternate(runs, repeats, iters, dev)
    matmul = times.pop(MATMUL, None)
    matmul_gflops = None if matmul is None else MATMUL_FLOPS / statistics.median(matmul) / 1e9
    summary = pair.graph.summary()
    rows = []
    for side, seconds in times.items():
        ips, p50, p90 = summarize_times(seconds, batch)
        ours_side = side == "vitgraph"
        done = getattr(models[side], "vitgraph_optimized", None)
        rows.append(
            Measurement(
                model=pair.label,
                side=side,
                mode=mode,
                batch=batch,
                dtype=dtype,
                optimized=optimize and ours_side,
                compiled=compile and (ours_side or pair.library != "plain"),
                images_per_s=ips,
                p50_ms=p50,
                p90_ms=p90,
                peak_mib=peaks.get(side),
                compile_s=compile_s.get(side),
                params=sum(p.numel() for p in models[side].parameters()),
                gmacs=summary.macs / 1e9,
                extra={
                    **({} if done is None else {"memory_format": done["memory_format"]}),
                    **({} if matmul_gflops is None else {"matmul_gflops": matmul_gflops}),
                },
            )
        )
    return rows, meter.load


def ratio(rows: Sequence[Measurement]) -> float | None:
    """vitgraph ÷ reference images/s of one setting's rows."""
    ours = [r for r in rows if r.side == "vitgraph"]
    refs = [r for r in rows if r.side != "vitgraph"]
    if not ours or not refs:
        return None
    return ours[0].images_per_s / refs[0].images_per_s


# ------------------------------------------------------------------------ a family


def family_variants(spec: str) -> list[str]:
    """Every variant of the shipped spec (or spec file) ``spec``."""
    graph = load(spec)
    return list(graph.source.data.get("variants", {})) or [graph.variant or graph.name]


def sweep(
    spec: str, measure_one: Callable[[Pair], list[Measurement]], seed: int = 0
) -> list[Measurement]:
    """``measure_one`` over every variant of ``spec``, each built with ``seed``."""
    rows = []
    for variant in family_variants(spec):
        rows += measure_one(resolve(spec, variant, seed=seed))
    return rows


def plot(rows: Sequence[Measurement], path: str, x: str = "gmacs", title: str = "") -> str:
    """Draw images/s against GMACs (or params) per variant into a PNG at ``path``: the
    Pareto picture of a family. Needs matplotlib (the ``plot`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BenchError(MISSING["plot"]) from exc
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    for optimized in sorted({r.optimized for r in rows}):
        chosen = [r for r in rows if r.optimized == optimized]
        xs = [(r.gmacs or 0.0) if x == "gmacs" else (r.params or 0) / 1e6 for r in chosen]
        ys = [r.images_per_s for r in chosen]
        axes.plot(xs, ys, "o-" if len(xs) > 1 else "o", label="optimized" if optimized else "built")
        for r, a, b in zip(chosen, xs, ys, strict=True):
            axes.annotate(r.model, (a, b), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes.set_xlabel("GMACs per image" if x == "gmacs" else "parameters (M)")
    axes.set_ylabel("images / s")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if len({r.optimized for r in rows}) > 1:
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
    return path
