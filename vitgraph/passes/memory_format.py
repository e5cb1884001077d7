"""Choosing the memory format of a conv-heavy model: NCHW or channels-last (NHWC).

Policy: a graph spends most of its multiply-adds on feature maps (nodes whose output is an
image, counted by the summary on the meta device) — a ResNet, BoTNet, a conv stem that
dominates — is conv-heavy; a transformer over tokens is not and stays as built. Which
format is faster depends on the kernels and the machine (channels-last helps oneDNN's
convolutions, but costs copies where a map becomes tokens: on a 2-core Xeon it makes a
ResNet-18 1.28× faster and BoTNet26t 0.92× as fast), so ``auto`` times both on the
example input and keeps the faster. Mechanism: conv weights are laid out channels-last
and the input is converted once at the start of the graph.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import fx, nn

FORMATS = ("auto", "contiguous", "channels_last")
#: share of the multiply-adds on feature maps above which a graph is conv-heavy
CONV_HEAVY = 0.5


def conv_share(model: fx.GraphModule) -> float:
    """The share of the model's multiply-adds spent in nodes whose output is a feature map."""
    summary = model.vitgraph_graph.summary()
    if not summary.macs:
        return 0.0
    on_maps = sum(row.macs for row in summary.rows if len(row.output_shape) == 3)
    return on_maps / summary.macs


def _seconds(model: fx.GraphModule, x: torch.Tensor, runs: int) -> float:
    best = float("inf")
    with torch.inference_mode():
        model(x)  # first call: lazy kernels, oneDNN primitive caches
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def to_channels_last(model: fx.GraphModule) -> None:
    """Lay out the 2-D convolutions' weights channels-last and convert the input once,
    first thing (a map keeps the layout through the convs that follow)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data = module.weight.contiguous(memory_format=torch.channels_last)
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
    conv-heavy graph, NCHW otherwise) and return the one chosen."""
    if memory_format not in FORMATS:
        raise ValueError(f"memory_format must be one of {', '.join(FORMATS)}")
    if memory_format == "contiguous":
        return memory_format
    if memory_format == "auto":
        if conv_share(model) < CONV_HEAVY:
            return "contiguous"
        x = example if example is not None else _example(model)
        trial = copy.deepcopy(model)
        to_channels_last(trial)
        plain = _seconds(model, x, 3)
        last = _seconds(trial, x.contiguous(memory_format=torch.channels_last), 3)
        if last >= plain:
            return "contiguous"
    to_channels_last(model)
    return "channels_last"


def _example(model: Any) -> torch.Tensor:
    param = next(model.parameters())
    shape = model.vitgraph_graph.input_shape
    return torch.randn(1, *shape, device=param.device, dtype=param.dtype)
