"""Small torch modules the block kinds share that torch does not have, by the name the
vocabulary gives them (``vitgraph.vocabulary.Activation``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the sigmoid approximation of GELU (Hendrycks & Gimpel
    2016 §2) that OpenAI's GPT-2, iGPT and CLIP train with (timm's ``QuickGELU``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


_MAKERS: dict[str, Callable[[], nn.Module]] = {
    "gelu": lambda: nn.GELU(),
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "quick_gelu": QuickGELU,
    "relu": lambda: nn.ReLU(),
    "silu": lambda: nn.SiLU(),
    "hardswish": lambda: nn.Hardswish(),
    "tanh": lambda: nn.Tanh(),
}


def activation_module(name: str) -> nn.Module:
    """A fresh activation module by its vocabulary name."""
    return _MAKERS[name]()
