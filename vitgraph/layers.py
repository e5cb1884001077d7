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


# each maker takes ``inplace``; the ones torch cannot run in place ignore it
_MAKERS: dict[str, Callable[[bool], nn.Module]] = {
    "gelu": lambda inplace: nn.GELU(),
    "gelu_tanh": lambda inplace: nn.GELU(approximate="tanh"),
    "quick_gelu": lambda inplace: QuickGELU(),
    "relu": lambda inplace: nn.ReLU(inplace=inplace),
    "silu": lambda inplace: nn.SiLU(inplace=inplace),
    "hardswish": lambda inplace: nn.Hardswish(inplace=inplace),
    "tanh": lambda inplace: nn.Tanh(),
}


class Incremental:
    """A module that can run a sequence a chunk at a time, for sampling with a cache
    (``vitgraph.sampling``): ``decoding(True)`` clears its state and makes each forward
    continue the sequence where the previous one stopped (attention keeps its keys and
    values, a position table its offset); ``decoding(False)`` returns to whole sequences.

    Generative kinds implement it on the modules that mix or place positions; per-token
    modules (norms, MLPs, projections) need nothing."""

    def decoding(self, on: bool) -> None:
        raise NotImplementedError


class ChunkPositions(Incremental):
    """An ``Incremental`` module that reads a per-position signal (a table, a timing
    signal, per-channel offsets): whole sequences read its rows from 0; while decoding,
    each chunk reads the rows after the previous chunk's."""

    position: int | None = None  # decoding: positions read so far

    def read(self, signal: torch.Tensor, length: int) -> torch.Tensor:
        """The ``length`` rows of ``signal`` (along dim 0) this chunk's positions read."""
        start = self.position or 0
        if self.position is not None:
            self.position += length
        return torch.narrow(signal, 0, start, length)  # fx-traceable with an int start

    def decoding(self, on: bool) -> None:
        self.position = 0 if on else None


def nearest_colour(pixels: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """The id of each pixel's nearest palette colour by squared distance (iGPT §3.1):
    ``(..., C)`` pixels, ``(K, C)`` palette -> ``(...)`` ids."""
    flat = pixels.reshape(-1, pixels.shape[-1])
    distance = (palette * palette).sum(-1) - 2 * flat @ palette.T  # |p|² is common to all
    return distance.argmin(-1).reshape(pixels.shape[:-1])


def chunk_causal_mask(queries: int, past: int, device: torch.device) -> torch.Tensor | None:
    """The causal mask of ``queries`` new positions over ``past`` cached ones plus
    themselves (True = attend): new query i sees keys 0 .. past + i. None when one query
    (it sees everything) or nothing is cached (SDPA's own ``is_causal`` applies)."""
    if queries == 1 or past == 0:
        return None
    keys = torch.arange(past + queries, device=device)
    return keys[None, :] <= (past + torch.arange(queries, device=device))[:, None]


def activation_module(name: str, inplace: bool = False) -> nn.Module:
    """A fresh activation module by its vocabulary name. ``inplace``: it overwrites its
    input where it can (ReLU, SiLU, Hardswish), so training keeps one tensor fewer; only
    for an input nothing else reads (a BatchNorm's or a sum's output)."""
    return _MAKERS[name](inplace)
