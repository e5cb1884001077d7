"""Extra tokens prepended to the patch tokens: class (ViT §3.1), distillation (DeiT
arXiv:2012.12877 §4) and registers (Darcet et al. 2023 arXiv:2309.16588 §2.2). Each
joins the end of the existing prefix, so a distillation token placed after a class
token sits at index 1, as in DeiT, and registers after the class token as in DINOv2."""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block, TensorOp
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, expect_tokens


def insert_token(x: torch.Tensor, token: torch.Tensor, *, at: int) -> torch.Tensor:
    """(B, N, D) -> (B, N + T, D) with the T ``token`` rows starting at position ``at``."""
    token = token.expand(x.shape[0], -1, -1)
    if at == 0:
        return torch.cat([token, x], dim=1)
    return torch.cat([x[:, :at], token, x[:, at:]], dim=1)


class _PrefixToken(Block):
    role = "token"
    init_std: Annotated[float, Field(ge=0)] = 1e-6
    """Std of the normal init (timm: 1e-6 for the class token)."""
    tokens: Annotated[int, Field(gt=0, le=16)] = 1
    """How many tokens this node adds, stored as one (1, tokens, dim) parameter (PiT keeps
    its class and distillation tokens in one tensor)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        return self, Tokens(tokens.dim, tokens.grid, tokens.prefix + self.tokens, tokens.count)

    def build(self, *inputs: TensorType) -> TensorOp:
        tokens = inputs[0]
        assert isinstance(tokens, Tokens)
        token = nn.Parameter(torch.empty(1, self.tokens, tokens.dim))
        nn.init.normal_(token, std=self.init_std)
        return TensorOp(token, insert_token, kwargs={"at": tokens.prefix})


@register
class ClassToken(_PrefixToken):
    """A learned class token joining the prefix (ViT §3.1)."""

    kind: Literal["cls_token"] = "cls_token"


@register
class DistillationToken(_PrefixToken):
    """A learned distillation token joining the prefix after the class token (DeiT §4)."""

    kind: Literal["dist_token"] = "dist_token"
    init_std: Annotated[float, Field(ge=0)] = 0.02


@register
class RegisterTokens(_PrefixToken):
    """Learned register tokens joining the prefix (Darcet et al. 2023 §2.2: extra tokens
    no output reads, which take over the high-norm "artifact" tokens' role); timm's
    ``reg_tokens``, one (1, tokens, dim) parameter."""

    kind: Literal["reg_token"] = "reg_token"
    tokens: Annotated[int, Field(gt=0, le=16)] = 4
    """How many registers (the paper's models use 4)."""
