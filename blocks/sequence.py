"""Pixels as sequences (iGPT, Chen et al. ICML 2020 §2-3): a colour palette that turns an
image into integer ids in raster order, token and position embeddings, the
start-of-sequence shift that makes position i predict id i, and per-position logits.

Each kind that places or mixes positions can also run a sequence a chunk at a time
(``vitgraph.layers.Incremental``), so ``vitgraph sample`` decodes with a cache.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.errors import ShapeError
from vitgraph.layers import ChunkPositions, Incremental, nearest_colour
from vitgraph.registry import register
from vitgraph.shapes import Ids, TensorType, Tokens, expect_ids, expect_image, expect_tokens
from vitgraph.vocabulary import PosInt


@register
class PaletteQuantize(Block):
    """An image as palette ids in raster order (iGPT §3.1: each pixel becomes the index of
    its nearest colour by squared distance). The palette is a buffer of ``colors`` x
    channels, fitted by k-means (``vitgraph palette``) and saved with the weights."""

    kind: Literal["palette_quantize"] = "palette_quantize"
    role = "tokenizer"
    weight_init = "keep"
    colors: PosInt
    """Number of palette colours (the id vocabulary: 512 in iGPT)."""
    palette: list[list[float]] | str | None = None
    """The colours in [-1, 1]: a list of ``colors`` rows of one value per channel, or a
    ``.npy`` file (``vitgraph palette`` writes one); default: evenly spaced greys until
    weights with a fitted palette are loaded."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        if self.palette is not None:
            rows = self.colours()
            for k, row in enumerate(rows):
                if len(row) != image.channels:
                    raise ShapeError(
                        f"palette row {k} has {len(row)} values, but the image has "
                        f"{image.channels} channels",
                        field="palette",
                        hint=f"give every colour {image.channels} values in [-1, 1]",
                    )
            shape = (len(rows), image.channels)
            if shape[0] != self.colors:
                raise ShapeError(
                    f"the palette holds {shape[0]} colours, but colors is {self.colors}",
                    field="palette",
                    hint=f"give {self.colors} rows of {image.channels} values in [-1, 1]",
                )
        return self, Ids(image.height * image.width, self.colors, (image.height, image.width))

    def colours(self) -> list[list[float]]:
        """The palette's rows (read from the ``.npy`` file when it names one)."""
        if not isinstance(self.palette, str):
            return self.palette or []
        import numpy as np

        try:
            array = np.load(self.palette)
        except (OSError, ValueError) as exc:
            raise ShapeError(
                f"cannot read the palette file {self.palette}: {exc}", field="palette"
            ) from None
        return [list(map(float, np.atleast_1d(row))) for row in np.atleast_2d(array)]

    def build(self, *inputs: TensorType) -> nn.Module:
        image = expect_image(inputs[0], self.kind)
        palette = Palette(self.colors, image.channels)
        if self.palette is not None:
            palette.palette.copy_(torch.tensor(self.colours()))
        return palette


class Palette(nn.Module):
    palette: torch.Tensor

    def __init__(self, colors: int, channels: int) -> None:
        super().__init__()
        # evenly spaced greys until a fitted palette is loaded (iGPT pixels are in [-1, 1])
        grey = torch.linspace(-1.0, 1.0, colors)[:, None].expand(colors, channels)
        self.register_buffer("palette", grey.contiguous())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return nearest_colour(image.flatten(2).transpose(1, 2), self.palette)  # raster order


@register
class TokenEmbed(Block):
    """A learned vector per id: ids → tokens (GPT-2's ``wte``)."""

    kind: Literal["token_embed"] = "token_embed"
    role = "tokenizer"
    weight_init = "keep"  # build draws N(0, init_std), as HF ImageGPT
    dim: PosInt
    """Token width."""
    init_std: Annotated[float, Field(gt=0)] = 0.02
    """Std of the normal init."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        ids = expect_ids(inputs[0], self.kind)
        return self, Tokens(self.dim, ids.grid, count=None if ids.grid else ids.length)

    def build(self, *inputs: TensorType) -> nn.Module:
        ids = expect_ids(inputs[0], self.kind)
        embed = nn.Embedding(ids.vocab, self.dim)
        nn.init.normal_(embed.weight, std=self.init_std)
        return embed


@register
class ShiftRight(Block):
    """The start-of-sequence shift (iGPT §2.1, as GPT-2): a learned start vector first,
    every token one place later, the last dropped, so the output at position i has seen
    ids before i only and predicts id i."""

    kind: Literal["shift_right"] = "shift_right"
    role = "token"
    objective = "next_token"  # an autoregressive model: position i predicts id i
    weight_init = "keep"
    init_std: Annotated[float, Field(gt=0)] = 0.02
    """Std of the normal init of the start vector."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        return self, expect_tokens(inputs[0], self.kind)

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        return StartShift(tokens.dim, self.init_std)


class StartShift(nn.Module, Incremental):
    def __init__(self, dim: int, std: float) -> None:
        super().__init__()
        self.start = nn.Parameter(torch.empty(dim).normal_(std=std))
        self.position: int | None = None  # decoding: positions emitted so far

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = self.start.to(x.dtype).expand(x.shape[0], 1, -1)
        if self.position is None:
            return torch.cat([start, x[:, :-1]], dim=1)
        # decoding: the caller feeds the ids already known; the first call opens with the
        # start vector, so the last output always predicts the next id
        out = torch.cat([start, x], dim=1) if self.position == 0 else x
        self.position += out.shape[1]
        return out

    def decoding(self, on: bool) -> None:
        self.position = 0 if on else None


@register
class SequencePosition(Block):
    """A learned table of positions added to a sequence (GPT-2's ``wpe``): ``rows``
    positions (default: the sequence length), so shorter prefixes run too."""

    kind: Literal["seq_pos"] = "seq_pos"
    role = "position"
    weight_init = "keep"  # build draws N(0, init_std)
    rows: PosInt | None = None
    """Table rows: the longest sequence the model takes (iGPT counts 1024)."""
    init_std: Annotated[float, Field(gt=0)] = 0.02
    """Std of the normal init (HF ImageGPT: 0.02; official iGPT: 0.01)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        rows = self.rows or tokens.length
        if tokens.length > rows:
            raise ShapeError(
                f"the sequence has {tokens.length} positions but the position table "
                f"has {rows} rows",
                field="rows",
                hint=f"set rows: {tokens.length} (or a shorter input: ids: {rows})",
            )
        return self.model_copy(update={"rows": rows}), tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        assert self.rows is not None
        return PositionTable(self.rows, tokens.dim, self.init_std)


class PositionTable(nn.Module, ChunkPositions):
    def __init__(self, rows: int, dim: int, std: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(rows, dim).normal_(std=std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.read(self.weight, x.shape[1])


@register
class TokenLogits(Block):
    """Per-position logits over a vocabulary: a linear map of every token (iGPT's
    untied, bias-free ``lm_head``; 512 palette colours, never the start id)."""

    kind: Literal["token_logits"] = "token_logits"
    role = "head"
    weight_init = "keep"  # build draws N(0, 0.02)
    vocab: PosInt
    """Number of ids predicted at each position."""
    bias: bool = False
    """A bias per id (iGPT has none)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        return self, Tokens(self.vocab, tokens.grid, tokens.prefix, tokens.count)

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        head = nn.Linear(tokens.dim, self.vocab, bias=self.bias)
        nn.init.normal_(head.weight, std=0.02)
        if head.bias is not None:
            nn.init.zeros_(head.bias)
        return head
