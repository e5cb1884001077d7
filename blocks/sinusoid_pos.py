"""The fixed 1-D sinusoid position table of Vaswani et al. (2017, §3.5), as T2T-ViT
(arXiv:2101.11986, official ``get_sinusoid_encoding``) and CCT's ``sine`` option use it:
``PE[p, 2i] = sin(p / 10000^(2i/d))``, ``PE[p, 2i+1] = cos(p / 10000^(2i/d))``, over every
token, the class token included. Stored as a frozen ``nn.Parameter``, as the official
code does, so it counts in the parameter totals the authors report.
"""

from __future__ import annotations

from typing import Literal, Self

import torch
from torch import nn

from vitgraph.block import Block, TensorOp
from vitgraph.blocks.position import add_table
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, expect_tokens


def sinusoid_1d(length: int, dim: int, temperature: float) -> torch.Tensor:
    """(length, dim) table with sin on even channels and cos on odd ones."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    exponent = (2 * (torch.arange(dim) // 2)).to(torch.float64) / dim
    angle = position / temperature ** exponent[None, :]
    table = angle.clone()
    table[:, 0::2], table[:, 1::2] = angle[:, 0::2].sin(), angle[:, 1::2].cos()
    return table.float()


@register
class SinusoidPosition(Block):
    """A fixed 1-D sinusoid table added to every token."""

    kind: Literal["sinusoid_pos"] = "sinusoid_pos"
    role = "position"
    temperature: float = 10000.0
    """Base of the frequencies."""
    counted: bool = True
    """Store the table as a frozen parameter (counted, as T2T-ViT's authors count it);
    false: a non-persistent buffer."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        return self, expect_tokens(inputs[0], self.kind)

    def build(self, *inputs: TensorType) -> TensorOp:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens)
        table = sinusoid_1d(tokens.length, tokens.dim, self.temperature)[None]
        if self.counted:
            return TensorOp(nn.Parameter(table, requires_grad=False), add_table, kwargs={"skip": 0})
        return TensorOp(table, add_table, persistent=False, kwargs={"skip": 0})
