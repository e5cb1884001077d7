"""Sampling from a generative model: ids one position at a time, with a cache.

The model side is small (``vitgraph.layers.Incremental``): the modules that place or mix
positions (attention, the position table, the start-of-sequence shift) can continue a
sequence a chunk at a time, so each new id costs one position's work, not the whole
prefix's. A model is generative when it is called with ids ``(B, N)`` and returns
per-position logits ``(B, N, V)`` where position i has seen the ids before i only; any
family that keeps this convention (iGPT, the Image Transformer) samples here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from vitgraph.graph import Graph
from vitgraph.layers import Incremental
from vitgraph.shapes import Ids


class SamplingError(ValueError):
    """The model cannot be sampled as asked (one line, with what to do)."""


def generative_shape(graph: Graph) -> tuple[int, int]:
    """(sequence length, vocabulary) of a generative graph; SamplingError otherwise."""
    given = graph.input_type
    out = graph.output_shape
    if not isinstance(given, Ids) or len(out) != 2 or out[0] != given.length:
        raise SamplingError(
            f"{graph.name} is not a generative model: sampling needs ids (B, N) in and "
            f"per-position logits (B, N, V) out, but it takes {given} and returns {out}"
        )
    return given.length, out[1]


@contextlib.contextmanager
def decoding(model: nn.Module) -> Iterator[list[Incremental]]:
    """Every ``Incremental`` module of ``model`` continues sequences inside the block."""
    parts: list[Incremental] = [m for m in model.modules() if isinstance(m, Incremental)]
    for part in parts:
        part.decoding(True)
    try:
        yield parts
    finally:
        for part in parts:
            part.decoding(False)


def _pick(logits: torch.Tensor, temperature: float, top_k: int | None, generator: Any):
    """One id per row: the most likely at temperature 0, else drawn from the softmax of
    ``logits / temperature`` over the ``top_k`` most likely ids."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


@torch.no_grad()
def sample(
    model: nn.Module,
    n: int = 1,
    *,
    prefix: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    cache: bool = True,
) -> torch.Tensor:
    """``n`` sequences ``(n, N)`` of ids from a generative vitgraph model (eval mode).

    ``prefix`` ``(n, k)`` ids fix the first k positions (the upper half of an image, to
    complete the lower half: iGPT Fig. 1); ``temperature`` 0 is greedy; ``top_k`` keeps
    the k most likely ids; ``cache`` off recomputes the whole prefix at every position
    (the reference the cached path is tested against)."""
    graph = getattr(model, "vitgraph_graph", None)
    if not isinstance(graph, Graph):
        raise SamplingError("sample takes a model built by vitgraph (Graph.build)")
    length, vocab = generative_shape(graph)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    ids = torch.zeros(n, length, dtype=torch.int64, device=device)
    known = 0
    if prefix is not None:
        if prefix.ndim != 2 or prefix.shape[0] != n or prefix.shape[1] > length:
            raise SamplingError(
                f"the prefix is {tuple(prefix.shape)}; it must be ({n}, k) ids with k <= {length}"
            )
        known = prefix.shape[1]
        ids[:, :known] = prefix.to(device)
    if known == length:
        return ids
    if cache:
        check_cache(model)
    was_training = model.training
    model.eval()
    try:
        if cache:
            with decoding(model):
                logits = model(ids[:, :known])[:, -1]
                for position in range(known, length):
                    ids[:, position] = _pick(logits, temperature, top_k, generator)
                    if position + 1 < length:
                        logits = model(ids[:, position : position + 1])[:, -1]
        else:
            for position in range(known, length):
                # position i's logits have seen ids before i only: what stands at i is
                # not read, so the whole sequence so far is fed as it is
                logits = model(ids[:, : position + 1])[:, position]
                ids[:, position] = _pick(logits, temperature, top_k, generator)
    finally:
        model.train(was_training)
    return ids


def check_cache(model: nn.Module, steps: int = 4, seed: int = 0) -> None:
    """SamplingError unless decoding with the cache gives the logits of the whole
    sequence (a model with a position-mixing module that keeps no state, or one that
    is not causal, would sample wrongly with it)."""
    graph: Any = getattr(model, "vitgraph_graph", None)
    length, vocab = generative_shape(graph)
    steps = min(steps, length)
    draw = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, graph.input_type.vocab, (1, steps), generator=draw)
    ids = ids.to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            whole = model(ids)
            with decoding(model):
                try:
                    parts = [model(ids[:, :1])]  # the start position and position 1
                    for position in range(2, steps):
                        parts.append(model(ids[:, position - 1 : position]))
                    stepped = torch.cat(parts, dim=1)
                except (RuntimeError, ValueError, IndexError):
                    # a module that cannot take a chunk at a time (the Image
                    # Transformer's DMOL reads whole pixels): the same answer as wrong logits
                    stepped = whole[:, :0]
    finally:
        model.train(was_training)
    if whole.shape != stepped.shape or not torch.allclose(whole, stepped, atol=1e-4, rtol=1e-4):
        raise SamplingError(
            f"{graph.name} does not decode with a cache: its logits differ from the whole "
            "sequence's (a module that mixes positions keeps no decoding state, or the "
            "model is not causal); sample with cache=False (--no-cache)"
        )


# -- pictures of sampled ids ------------------------------------------------------------


def palette_of(model: nn.Module, vocab: int) -> torch.Tensor:
    """The colours of the ids ``(vocab, C)`` in [-1, 1]: the model's own palette (a
    ``palette`` buffer, as ``palette_quantize`` keeps it), else ``vocab`` evenly spaced
    greys (the digits' grey levels)."""
    for name, buffer in model.named_buffers():
        if name.split(".")[-1] == "palette" and buffer.shape[0] == vocab:
            return buffer.detach().float().cpu()
    return torch.linspace(-1.0, 1.0, vocab)[:, None]


def layout_of(model: nn.Module) -> dict[str, Any]:
    """How a model's id sequence lies on its picture, merged from every module with a
    ``picture_layout()`` (a dict): ``skip`` leading ids that are no pixels (a class id),
    ``grid`` (rows, cols) of the ids after them, ``order`` (the sequence position of
    every grid cell in raster order, for a model that generates in another order) and
    ``channels`` (sub-pixels laid side by side along the width: one RGB pixel per
    ``channels`` ids). Empty for one id per pixel in raster order (iGPT)."""
    layout: dict[str, Any] = {}
    for module in model.modules():
        describe = getattr(module, "picture_layout", None)
        if callable(describe):
            layout.update(describe())
    return layout


def to_images(
    ids: torch.Tensor,
    palette: torch.Tensor,
    grid: tuple[int, int],
    layout: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Id sequences ``(B, N)`` as uint8 images ``(B, H, W, C)``: in raster order, or as
    ``layout`` (``layout_of``) lays them out."""
    layout = layout or {}
    ids = ids[:, layout.get("skip", 0) :].cpu()
    grid = layout.get("grid", grid)
    if layout.get("order") is not None:
        ids = ids[:, layout["order"]]
    if palette.ndim != 2 or palette.shape[0] <= int(ids.max()):
        raise SamplingError(
            f"the palette is {tuple(palette.shape)}; it needs (colours, channels) with "
            f"at least {int(ids.max()) + 1} colours"
        )
    pixels = palette[ids]  # (B, N, C) in [-1, 1]
    pixels = ((pixels + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    channels = layout.get("channels", 1)
    if channels > 1 and palette.shape[1] == 1:  # sub-pixel intensities: one pixel each
        return pixels.reshape(ids.shape[0], grid[0], grid[1] // channels, channels)
    return pixels.reshape(ids.shape[0], grid[0], grid[1], palette.shape[1])


def tile(images: torch.Tensor, columns: int, scale: int = 4, gap: int = 1) -> torch.Tensor:
    """Images ``(B, H, W, C)`` side by side in rows of ``columns``, each pixel a
    ``scale`` x ``scale`` square, ``gap`` pixels apart: one ``(H', W', C)`` picture."""
    count, height, width, channels = images.shape
    images = images.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    height, width = height * scale, width * scale
    rows = -(-count // columns)
    out = torch.full(
        (rows * (height + gap) + gap, columns * (width + gap) + gap, channels),
        255,
        dtype=torch.uint8,
    )
    for k in range(count):
        top, left = gap + (k // columns) * (height + gap), gap + (k % columns) * (width + gap)
        out[top : top + height, left : left + width] = images[k]
    return out


def write_png(path: str, picture: torch.Tensor) -> None:
    """An 8-bit grey (1 channel) or RGB (3) PNG of ``picture`` ``(H, W, C)`` uint8 (the
    PNG specification's critical chunks only: no image library needed)."""
    import struct
    import zlib

    height, width, channels = picture.shape
    if channels not in (1, 3):
        raise SamplingError(f"a PNG of {channels} channels: give 1 (grey) or 3 (RGB)")
    rows = picture.contiguous().numpy().reshape(height, width * channels)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    colour = 0 if channels == 1 else 2
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)))
        out.write(chunk(b"IEND", b""))
