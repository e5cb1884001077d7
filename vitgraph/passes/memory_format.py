"""Choosing the memory format of a model with convolutions: NCHW or channels-last (NHWC).

Policy: a graph with a convolution over feature maps (a stem conv, a depthwise conv, a
1×1 conv: any 2-D conv but a patchify one whose kernel equals its stride) may run faster
channels-last; a transformer whose only conv cuts the image into patches stays as built.
Which format is faster depends on the kernels and the machine (channels-last helps
oneDNN's convolutions and max-pool — CeiT's stem max-pool is 10× faster channels-last on
a 2-core Xeon —, but costs copies where a map becomes tokens: BoTNet26t was 0.92× as
fast), so ``auto`` times both on the example input and keeps the faster. Mechanism: conv
weights are laid out channels-last, the input is converted once at the start of the
graph, and each 1×1 conv runs as a matmul over the channel axis (``PointwiseConv2d``:
channels-last, that axis is contiguous, so no copy; PyTorch's own 1×1 conv takes its slow
path below batch 16 on one thread and copies its input to NCHW).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from vitgraph.passes.folding import put
from vitgraph.shapes import Image

FORMATS = ("auto", "contiguous", "channels_last")


def map_convs(model: nn.Module) -> list[str]:
    """The 2-D convs of the model that run over feature maps: all but the patchify ones
    (a kernel larger than 1 and equal to the stride, no padding), which see each pixel
    once and make tokens."""
    return [
        path
        for path, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
        and not (m.kernel_size == m.stride != (1, 1) and m.padding in ((0, 0), "valid"))
    ]


class PointwiseConv2d(nn.Conv2d):
    """A 1×1, stride-1, ungrouped, unpadded conv computed as a matmul over the channel
    axis: the same function and parameters (an ``nn.Conv2d`` still, for anything that
    reads its attributes); its output is laid out channels-last."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.flatten(1)
        return F.linear(x.movedim(1, -1), weight, self.bias).movedim(-1, 1)


def _pointwise(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.padding in ((0, 0), "valid")
        and conv.dilation == (1, 1)
        and conv.groups == 1
    )


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:  # a GPU runs asynchronously: wait for it before reading the clock
        torch.cuda.synchronize(x.device)


def _faster_channels_last(
    plain: fx.GraphModule, last: fx.GraphModule, x: torch.Tensor, rounds: int = 3
) -> bool:
    """Whether ``last`` runs ``x`` faster than ``plain``: the best of ``rounds`` calls
    each, the two taking turns (another process's burst then slows both alike)."""
    best = {"plain": float("inf"), "last": float("inf")}
    with torch.inference_mode():
        plain(x), last(x)  # first calls: lazy kernels, oneDNN primitive caches
        for _ in range(rounds):
            for key, model in (("plain", plain), ("last", last)):
                _sync(x)
                start = time.perf_counter()
                model(x)
                _sync(x)
                best[key] = min(best[key], time.perf_counter() - start)
    return best["last"] < best["plain"]


@torch.no_grad()
def to_channels_last(model: fx.GraphModule) -> None:
    """Lay out the 2-D convolutions' weights channels-last, run the 1×1 ones as matmuls
    over channels and convert the input once, first thing (a map keeps the layout
    through the convs that follow)."""
    for path, module in list(model.named_modules()):
        if _pointwise(module):
            pointwise = PointwiseConv2d(
                module.in_channels,
                module.out_channels,
                1,
                bias=module.bias is not None,
                device="meta",
            )
            pointwise.weight, pointwise.bias = module.weight, module.bias
            put(model, path, pointwise)
        elif isinstance(module, nn.Conv2d):
            module.weight.data = module.weight.contiguous(memory_format=torch.channels_last)
    graph = getattr(model, "vitgraph_graph", None)
    if graph is not None and not isinstance(graph.input_type, Image):
        model.recompile()
        return  # ids or tokens in: no image to lay out
    placeholder = next(n for n in model.graph.nodes if n.op == "placeholder")
    with model.graph.inserting_after(placeholder):
        converted = model.graph.call_method(
            "contiguous", (placeholder,), {"memory_format": torch.channels_last}
        )
    placeholder.replace_all_uses_with(converted, delete_user_cb=lambda user: user is not converted)
    model.recompile()


def choose_memory_format(
    model: fx.GraphModule, memory_format: str = "auto", example: torch.Tensor | None = None
) -> str:
    """Apply ``memory_format`` (``auto``: the faster of the two on ``example`` for a
    graph with convs over feature maps, NCHW otherwise) and return the one chosen."""
    if memory_format not in FORMATS:
        raise ValueError(f"memory_format must be one of {', '.join(FORMATS)}")
    if memory_format == "contiguous":
        return memory_format
    if memory_format == "auto":
        if not map_convs(model):
            return "contiguous"
        x = example if example is not None else _example(model)
        trial = copy.deepcopy(model)
        to_channels_last(trial)
        if not _faster_channels_last(model, trial, x):
            return "contiguous"
    to_channels_last(model)
    return "channels_last"


def _example(model: Any) -> torch.Tensor:
    param = next(model.parameters())
    return model.vitgraph_graph.example_input(1, device=param.device, dtype=param.dtype)
