"""Visual Transformer (VT) blocks (Wu et al., arXiv:2006.03677 §3, Appendix A).

A VT module turns a feature map ``X`` (C channels) into ``L`` visual tokens with
``C_T`` channels (tokenizer, §3.1), relates the tokens with a transformer (§3.2) and
projects them back onto the feature map (projector, §3.3):

- ``vt_tokenizer``: filter-based (eq. 1, ``A = softmax_HW(X W_A)``, ``T = Aᵀ X``) or
  recurrent (eq. 2, ``W_R = T_in W_{T→R}``): the first half of the previous tokens
  queries the pixels and the second half is kept, so each module refines ``L / 2``
  tokens (appendix pseudo-code).
- ``vt_transformer``: eqs. 3-4, self-attention over the tokens plus a two-layer ReLU
  feed-forward (``ffn_layers: 1`` gives the appendix pseudo-code's single pointwise
  layer instead), each with a residual.
- ``vt_projector``: eq. 5, ``X_out = X_in + softmax_L((X_in W_Q)(T W_K)ᵀ) T``.

The equations leave the multi-head split, the grouped 1×1 convolutions and the C→C_T
mapping open; these follow the paper's appendix pseudo-code (16 heads, 16 groups on
the feature-map convolutions, 8 groups on the token key/query/value, keys and queries
at ``C_T / 2``). Attention products use ``F.scaled_dot_product_attention``; only the
filter tokenizer, whose coefficients are not a key-query product, has an explicit
softmax.
"""

from __future__ import annotations

from typing import Any, Literal, Self

import torch
from torch import nn

from vitgraph.block import Block
from vitgraph.blocks._attention_common import attend, merge_heads, split_heads
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, expect_image, expect_tokens
from vitgraph.vocabulary import PosInt


def _check_split(what: str, channels: int, parts: int, field: str) -> None:
    if channels % parts:
        raise ShapeError(
            f"{what} of {channels} channels does not split into {parts} {field}",
            field=field,
            hint=f"use a divisor of {channels}",
        )


def _visual_tokens(tokens: TensorType, kind: str, dim: int | None = None) -> Tokens:
    t = expect_tokens(tokens, kind)
    if t.grid is not None or t.prefix:
        raise ShapeError(f"{kind} expects visual tokens (no grid, no prefix), got {t}")
    if dim is not None and t.dim != dim:
        raise ShapeError(
            f"the previous tokens have {t.dim} channels, this tokenizer makes {dim}",
            field="dim",
            hint=f"set dim: {t.dim}",
        )
    return t


@register
class VTTokenizer(Block):
    """Feature map ``(C, H, W)`` → ``L`` visual tokens of ``C_T`` channels.

    Filter-based with one input; recurrent (guided by the previous module's tokens)
    with ``recurrent: true`` and the previous tokens as second input. A filter-based
    tokenizer ignores a second input, so a chain of modules can be one ``repeat``.
    """

    kind: Literal["vt_tokenizer"] = "vt_tokenizer"
    role = "visual_tokens"
    weight_init = "kaiming_fan_out"  # torchvision ResNet rule over VT's modules
    arity = None
    tokens: PosInt = 16
    """Number of visual tokens L (§4: 16 for every module)."""
    dim: PosInt = 1024
    """Token channels C_T."""
    recurrent: bool = False
    """Recurrent tokenizer (eq. 2): the first L/2 previous tokens query the pixels."""
    heads: PosInt = 16
    """Heads of the recurrent tokenizer's query-key product."""
    groups: PosInt = 16
    """Groups of the 1×1 key/value convolutions on the feature map."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        if not 1 <= len(inputs) <= 2:
            raise ShapeError(
                f"vt_tokenizer takes a feature map and optionally the previous "
                f"tokens, got {len(inputs)} inputs"
            )
        image = expect_image(inputs[0], self.kind)
        _check_split("the feature map", image.channels, self.groups, "groups")
        if self.recurrent:
            if len(inputs) != 2:
                raise ShapeError(
                    "a recurrent tokenizer needs the previous module's tokens as its second input",
                    field="recurrent",
                    hint="inputs: [feature map, previous tokens], or set recurrent: false",
                )
            prev = _visual_tokens(inputs[1], self.kind, self.dim)
            if prev.count != self.tokens:
                raise ShapeError(
                    f"the previous module has {prev.count} tokens, this one {self.tokens}",
                    field="tokens",
                    hint=f"set tokens: {prev.count}",
                )
            if self.tokens % 2:
                raise ShapeError(
                    f"a recurrent tokenizer refines half of its {self.tokens} "
                    "tokens; the count must be even",
                    field="tokens",
                )
            _check_split("the feature map", image.channels, self.heads, "heads")
        return self, Tokens(self.dim, None, count=self.tokens)

    def build(self, *inputs: TensorType) -> nn.Module:
        channels = expect_image(inputs[0], self.kind).channels
        if self.recurrent:
            return RecurrentTokenizer(channels, self.dim, self.tokens, self.heads, self.groups)
        return FilterTokenizer(channels, self.dim, self.tokens, self.groups)


@register
class VTTransformer(Block):
    """Transformer over visual tokens (eqs. 3-4): ``T' = T + attn(T)``,
    ``T_out = T' + ReLU(T' F1) F2``."""

    kind: Literal["vt_transformer"] = "vt_transformer"
    role = "visual_tokens"
    weight_init = "kaiming_fan_out"  # torchvision ResNet rule over VT's modules
    heads: PosInt = 16
    """Attention heads."""
    groups: PosInt = 8
    """Groups of the 1×1 key/query/value convolutions (appendix pseudo-code)."""
    ffn_layers: Literal[1, 2] = 2
    """Feed-forward layers: 2 is eq. 4 (``F1``, ReLU, ``F2``, §3.2: "two pointwise
    convolutions"); 1 is the appendix pseudo-code's single ``ff_conv``, no activation."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = _visual_tokens(inputs[0], self.kind)
        if tokens.dim < 2:
            raise ShapeError(
                f"{self.kind} halves the token width for its keys and queries, but the "
                f"tokens have {tokens.dim} channel",
                hint="give the tokens at least 2 channels",
            )
        for parts, field in ((self.heads, "heads"), (self.groups, "groups")):
            # keys and queries have C_T / 2 channels, split into heads and groups
            _check_split("the key/query projection", tokens.dim // 2, parts, field)
        # the values keep all C_T channels, split into the same groups
        _check_split("the value projection", tokens.dim, self.groups, "groups")
        return self, tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        return TokenTransformer(
            expect_tokens(inputs[0], self.kind).dim, self.heads, self.groups, self.ffn_layers
        )


@register
class VTProjector(Block):
    """Visual tokens back onto the feature map (eq. 5): ``(X, T) → X + attn(X, T)``."""

    kind: Literal["vt_projector"] = "vt_projector"
    role = "visual_tokens"
    weight_init = "kaiming_fan_out"  # torchvision ResNet rule over VT's modules
    arity = 2
    heads: PosInt = 16
    """Heads of the pixel-token attention."""
    groups: PosInt = 16
    """Groups of the 1×1 query convolution on the feature map."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        _visual_tokens(inputs[1], self.kind)
        _check_split("the feature map", image.channels, self.heads, "heads")
        _check_split("the feature map", image.channels, self.groups, "groups")
        return self, image

    def build(self, *inputs: TensorType) -> nn.Module:
        return Projector(
            expect_image(inputs[0], self.kind).channels,
            expect_tokens(inputs[1], self.kind).dim,
            self.heads,
            self.groups,
        )

    def fused_projections(self, module: Any) -> list[tuple[str, ...]]:
        """The keys and values both read the visual tokens: one matmul at inference."""
        return [("k", "v")] if isinstance(module, Projector) else []


def _to_token_dim(channels: int, dim: int) -> nn.Module:
    # Appendix pseudo-code: a 1×1 conv maps the C-channel tokens to C_T channels when
    # the two differ (VT-R18/R34: C = 256, C_T = 1024).
    return nn.Identity() if channels == dim else nn.Linear(channels, dim)


class FilterTokenizer(nn.Module):
    def __init__(self, channels: int, dim: int, tokens: int, groups: int) -> None:
        super().__init__()
        self.token_coef = nn.Conv2d(channels, tokens, 1)  # W_A of eq. 1
        self.value = nn.Conv2d(channels, channels, 1, groups=groups)
        self.token = _to_token_dim(channels, dim)
        self.scale = channels**-0.5  # pseudo-code: coefficients / sqrt(C)

    def forward(self, x: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        coef = (self.token_coef(x).flatten(2) * self.scale).softmax(dim=-1)  # (B, L, HW)
        value = self.value(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        return self.token(coef @ value)  # (B, L, C_T)


class RecurrentTokenizer(nn.Module):
    def __init__(self, channels: int, dim: int, tokens: int, heads: int, groups: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, channels)  # W_{T→R} of eq. 2
        self.key = nn.Conv2d(channels, channels, 1, groups=groups)
        self.value = nn.Conv2d(channels, channels, 1, groups=groups)
        self.token = _to_token_dim(channels, dim)
        self.heads, self.kept = heads, tokens // 2  # ("half" would hide nn.Module.half)

    def forward(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        # the first half of the previous tokens guides the new ones; the second is kept
        # heads split head-major, as the pseudo-code's view(N, h, C // h, ...)
        q = split_heads(self.query(prev[:, : self.kept]), self.heads)  # (B, h, L/2, c)
        k = split_heads(self.key(x).flatten(2).transpose(1, 2), self.heads)  # (B, h, HW, c)
        v = split_heads(self.value(x).flatten(2).transpose(1, 2), self.heads)
        new = attend(q, k, v)  # softmax over the pixels
        new = self.token(merge_heads(new))  # (B, L/2, C_T)
        return torch.cat([prev[:, self.kept :], new], dim=1)


class TokenTransformer(nn.Module):
    def __init__(self, dim: int, heads: int, groups: int, ffn_layers: int = 2) -> None:
        super().__init__()
        self.k = nn.Conv1d(dim, dim // 2, 1, groups=groups)
        self.q = nn.Conv1d(dim, dim // 2, 1, groups=groups)
        self.v = nn.Conv1d(dim, dim, 1, groups=groups)
        self.fc1 = nn.Linear(dim, dim)  # F1 of eq. 4 (the pseudo-code's ff_conv)
        self.two_layers = ffn_layers == 2  # a build-time constant: traces to one path
        if self.two_layers:
            self.act = nn.ReLU()
            self.fc2 = nn.Linear(dim, dim)  # F2 of eq. 4
        self.heads = heads

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        c = t.transpose(1, 2)  # (B, C_T, L): the grouped 1×1 convs act on channels
        q, k, v = (
            split_heads(conv(c).transpose(1, 2), self.heads) for conv in (self.q, self.k, self.v)
        )
        # pseudo-code scales the key-query product by 1/sqrt(L)
        t = t + merge_heads(attend(q, k, v, scale=t.shape[1] ** -0.5))
        if self.two_layers:
            return t + self.fc2(self.act(self.fc1(t)))
        return t + self.fc1(t)


class Projector(nn.Module):
    def __init__(self, channels: int, dim: int, heads: int, groups: int) -> None:
        super().__init__()
        self.q = nn.Conv2d(channels, channels, 1, groups=groups)  # W_Q of eq. 5
        self.k = nn.Linear(dim, channels)  # W_K
        self.v = nn.Linear(dim, channels)  # tokens back to C channels
        self.heads = heads

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.q(x).flatten(2).transpose(1, 2), self.heads)  # (B, h, HW, c)
        out = attend(q, split_heads(self.k(t), self.heads), split_heads(self.v(t), self.heads))
        return x + out.transpose(2, 3).flatten(1, 2).view_as(x)
