"""Refiner (Zhou et al., "Refiner: Refining Self-attention for Vision Transformers",
arXiv:2106.03714; official code zhoudaquan/Refiner_ViT, ``models/refined_transformer.py``).

* ``attention_map``: a layer's softmax attention maps, as an image with one channel per
  head (heads x N x N). Making the map a node's output lets a later layer take it as a
  graph edge: the official ``share_atten`` layers reuse the previous layer's map instead
  of computing their own. With a second input (an earlier layer's map), that map is added
  after the softmax, weighted by the attention scale (official code; not in the paper).
* ``refined_attention``: attention whose map is refined before it weights the values
  (§3.1-3.2): attention expansion (a learned linear map from the H heads' maps to E*H maps,
  a 1x1 convolution), distributed local attention (a depthwise k x k convolution over each
  N x N map as an image), and a linear projection back to H maps, with BatchNorm + ReLU6
  and a residual (official ``DLA``), then a BatchNorm over heads (``adapt_bn``). One input:
  it computes its own map (a kind any encoder layer can swap in); two inputs: it refines
  (or, with ``refine: false``, just applies) the map it receives.

Both edit the map, so their softmax is explicit: SDPA cannot be used.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block, Fold, ScaleFold, batchnorm_pairs
from vitgraph.blocks._attention_common import (
    AttentionParams,
    merge_heads,
    split_fused,
    split_heads,
)
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import Image, TensorType, Tokens, expect_tokens
from vitgraph.vocabulary import DropRate, PosInt, head_width


def _check_map(attn: TensorType, heads: int, tokens: Tokens, what: str) -> None:
    """The second input must be an attention map of this layer's heads and tokens."""
    if not isinstance(attn, Image) or attn.height != attn.width:
        raise ShapeError(
            f"{what}'s second input must be an attention map (heads x N x N), "
            f"but it receives {attn}",
            hint="use inputs: [<tokens>, <map node>]",
        )
    if attn.channels != heads:
        raise ShapeError(
            f"the attention map it receives has {attn.channels} heads, not {heads}",
            field="heads",
            hint=f"set heads to {attn.channels}, as in the layer that made it",
        )
    if attn.height != tokens.length:
        raise ShapeError(
            f"the attention map it receives is {attn.height}x{attn.width}, but "
            f"the {tokens.length} tokens need {tokens.length}x{tokens.length}"
        )


def _arity(inputs: tuple[TensorType, ...], what: str) -> Tokens:
    if len(inputs) > 2:
        raise ShapeError(
            f"{what} takes tokens and at most one attention map, but receives {len(inputs)} inputs"
        )
    return expect_tokens(inputs[0], what + " (first input)")


@register
class AttentionMapBlock(Block):
    """The softmax attention maps of one layer, output as a heads x N x N image."""

    kind: Literal["attention_map"] = "attention_map"
    weight_init = "trunc_normal_linear"  # Refiner code: Linear TN(0.02), convs at defaults
    role = "attention"
    arity = None
    heads: PosInt
    """Number of heads (the map's channels)."""
    dim: int | None = None
    """Token width; default: the input's."""
    head_dim: PosInt | None = None
    """Width of each head's queries and keys; default: dim / heads."""
    qkv_bias: bool = True
    """Bias in the query/key projection."""
    attn_drop: DropRate = 0.0
    """Dropout on the attention weights (the map passed on is the dropped one, as in the
    official code)."""
    carry_weight: float | None = None
    """Weight of the earlier map (second input) added after the softmax; default: the
    attention scale head_dim^-0.5, as in the official code."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = _arity(inputs, self.kind)
        head_dim = head_width(self.dim, self.heads, self.head_dim, tokens)
        if len(inputs) == 2:
            _check_map(inputs[1], self.heads, tokens, self.kind)
        resolved = self.model_copy(update={"dim": tokens.dim, "head_dim": head_dim})
        return resolved, Image(self.heads, tokens.length, tokens.length)

    def build(self, *inputs: TensorType) -> nn.Module:
        assert self.dim and self.head_dim
        carry = self.head_dim**-0.5 if self.carry_weight is None else self.carry_weight
        return AttentionMap(
            self.dim, self.heads, self.head_dim, self.qkv_bias, self.attn_drop, carry
        )

    def constant_scales(self, module: Any) -> list[ScaleFold]:
        """1/sqrt(head_dim) into the query rows of qk (the first half of them)."""
        if not isinstance(getattr(module, "qk", None), nn.Linear):
            return []
        return [ScaleFold("scale", "qk", ((0, module.heads * module.head_dim),))]


class AttentionMap(nn.Module):
    def __init__(
        self, dim: int, heads: int, head_dim: int, qk_bias: bool, attn_drop: float, carry: float
    ) -> None:
        super().__init__()
        self.heads, self.head_dim, self.carry = heads, head_dim, carry
        self.scale = head_dim**-0.5
        self.qk = nn.Linear(dim, 2 * heads * head_dim, bias=qk_bias)
        self.attn_drop = nn.Dropout(attn_drop) if attn_drop else nn.Identity()

    def forward(self, x: torch.Tensor, earlier: torch.Tensor | None = None) -> torch.Tensor:
        q, k = split_fused(self.qk(x), 2, self.heads)  # each (B, H, N, d)
        if self.scale != 1.0:  # 1 once vitgraph.optimize folded it into the query rows
            q = q * self.scale
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, H, N, N)
        if earlier is not None:  # an argument left out at build time, not a tensor test
            attn = torch.add(attn, earlier, alpha=self.carry)  # one pass over the maps
        return self.attn_drop(attn)


@register
class RefinedAttentionBlock(AttentionParams):
    """Self-attention whose map is refined (head expansion, depthwise conv over the maps,
    projection back) before it weights the values; the map may come from another node."""

    kind: Literal["refined_attention"] = "refined_attention"
    weight_init = "trunc_normal_linear"  # Refiner code: Linear TN(0.02), convs at defaults
    arity = None
    refine: bool = True
    """Refine the map (expansion, depthwise conv, projection, BatchNorm); false: use the
    map it receives as it is."""
    expand: Annotated[float, Field(ge=1.0)] = 3.0
    """Attention expansion: the H heads' maps are linearly mapped to expand*H maps before
    the depthwise convolution (official ``DLA`` expand_ratio; 1: no expansion)."""
    kernel: PosInt = 3
    """Side of the depthwise convolution over each N x N map (odd: the map keeps its size)."""
    transform_scale: bool = False
    """Multiply the refined map by the attention scale head_dim^-0.5 (the official
    shared-attention layers do)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = _arity(inputs, self.kind)
        resolved = self.resolve(tokens)
        if len(inputs) == 2:
            _check_map(inputs[1], self.heads, tokens, self.kind)
        if self.refine:
            self._check_refiner(tokens.length)
        return resolved, tokens

    def _check_refiner(self, length: int) -> None:
        hidden = self.heads * self.expand
        if hidden != int(hidden):
            raise ShapeError(
                f"expand {self.expand:g} turns {self.heads} heads into "
                f"{hidden:g} maps: the expanded head count must be whole",
                field="expand",
                hint="use a whole expand (the official models "
                "use 3), or one that makes heads x expand whole",
            )
        if self.kernel % 2 == 0:
            raise ShapeError(
                f"kernel {self.kernel} must be odd so the refined map keeps its "
                f"{length}x{length} size",
                field="kernel",
                hint=f"use kernel {self.kernel - 1} or {self.kernel + 1}",
            )
        if self.kernel > length:
            raise ShapeError(
                f"kernel {self.kernel} is larger than the {length}x{length} "
                f"attention map it convolves ({length} tokens)",
                field="kernel",
                hint=f"use a kernel of at most {length - 1 + length % 2}",
            )

    def build(self, *inputs: TensorType) -> nn.Module:
        assert self.dim and self.head_dim
        refiner = (
            MapRefiner(self.heads, int(self.heads * self.expand), self.kernel)
            if self.refine
            else nn.Identity()
        )
        scale = self.head_dim**-0.5 if self.transform_scale else 1.0
        args = (
            self.dim,
            self.heads,
            self.head_dim,
            self.qkv_bias,
            self.proj_bias,
            self.proj_drop,
            refiner,
            scale,
        )
        if len(inputs) == 2:
            return MapAttention(*args)
        return RefinedAttention(*args, self.attn_drop)

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        """The refiner's BatchNorms after its convs fold into them (``adapt_bn`` reads a
        residual sum, so it stays)."""
        pairs = [("bn1", "conv_exp"), ("bn2", "depth_sep_conv"), ("bn3", "conv_pro")]
        return batchnorm_pairs(module, *((f"refiner.{n}", f"refiner.{c}") for n, c in pairs))


class MapRefiner(nn.Module):
    """The official ``DLA`` (refine_mode 'conv_exapnd') plus ``adapt_bn``: maps as images,
    (B, H, N, N) -> (B, H, N, N). Submodule names as the official code."""

    def __init__(self, heads: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.expanded = hidden != heads  # official: no expansion conv at expand_ratio 1
        self.conv_exp = nn.Conv2d(heads, hidden, 1, bias=False) if self.expanded else None
        self.bn1 = nn.BatchNorm2d(hidden) if self.expanded else None
        # §3.2 distributed local attention: each expanded map convolved on its own
        self.depth_sep_conv = nn.Conv2d(
            hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False
        )
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv_pro = nn.Conv2d(hidden, heads, 1, bias=False)  # back to the H heads
        self.bn3 = nn.BatchNorm2d(heads)
        self.act = nn.ReLU6()
        self.adapt_bn = nn.BatchNorm2d(heads)

    def forward(self, attn: torch.Tensor) -> torch.Tensor:
        x = attn
        if self.conv_exp is not None and self.bn1 is not None:  # fixed at build time
            x = self.act(self.bn1(self.conv_exp(x)))  # (B, E*H, N, N)
        x = self.act(self.bn2(self.depth_sep_conv(x)))
        x = self.bn3(self.conv_pro(x)) + attn  # (B, H, N, N), residual as the official DLA
        return self.adapt_bn(x)


class _Values(nn.Module):
    """What both forms share: the values, the output projection, the map's last touch."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        proj_bias: bool,
        proj_drop: float,
        refiner: nn.Module,
        scale: float,
    ) -> None:
        super().__init__()
        self.heads, self.head_dim, self.map_scale = heads, head_dim, scale
        self.refiner = refiner
        self.proj = nn.Linear(heads * head_dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop else nn.Identity()

    def attend(self, attn: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        x = self.refiner(attn) @ v  # (B, H, N, d)
        if self.map_scale != 1.0:  # a build-time constant; (s A) v = s (A v), N x d not N x N
            x = x * self.map_scale
        return self.proj_drop(self.proj(merge_heads(x)))  # (B, N, C)


class MapAttention(_Values):
    """Attention with a map that another node computed (an ``attention_map``, or the map
    an earlier layer passed on: official ``share_atten``); only the values are projected."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        qkv_bias: bool,
        proj_bias: bool,
        proj_drop: float,
        refiner: nn.Module,
        scale: float,
    ) -> None:
        super().__init__(dim, heads, head_dim, proj_bias, proj_drop, refiner, scale)
        self.v = nn.Linear(dim, heads * head_dim, bias=qkv_bias)

    def forward(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        v = split_heads(self.v(x), self.heads)  # (B, H, N, d)
        return self.attend(attn, v)


class RefinedAttention(_Values):
    """Attention that computes, refines and applies its own map (fused qkv)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        qkv_bias: bool,
        proj_bias: bool,
        proj_drop: float,
        refiner: nn.Module,
        scale: float,
        attn_drop: float,
    ) -> None:
        super().__init__(dim, heads, head_dim, proj_bias, proj_drop, refiner, scale)
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop) if attn_drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = split_fused(self.qkv(x), 3, self.heads)  # each (B, H, N, d)
        attn = ((q * self.head_dim**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.attend(self.attn_drop(attn), v)
