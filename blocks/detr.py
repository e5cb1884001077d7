"""DETR's blocks (Carion et al., arXiv:2005.12872): a feature pyramid gathered from a
backbone's taps, the 1×1 ``input_proj`` (§3.2 "Backbone" / "Transformer encoder"), the
sine position encoding of the valid-pixel mask (§A.4), the post-norm encoder layer and
the decoder layer whose positional encodings enter q and k of every attention, never the
values or the stream (§3.2, Fig. 10), the learned object queries, a norm shared by every
decoder output (§3.2 "Auxiliary decoding losses") and the class + box heads (§3.2 FFNs).

Module names follow the official code's roles (``self_attn``, ``cross_attn``, ``norm1-3``,
``class_embed``, ``bbox_embed.layers``); ``vitgraph/interop/hf_detr.py`` maps HF's keys.
"""

from __future__ import annotations

import math
from typing import Literal, Self

import torch
import torch.nn.functional as F
from torch import nn

from vitgraph.block import Block, FunctionOp
from vitgraph.blocks._attention_common import attend, merge_heads, split_heads
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import (
    Detections,
    Image,
    Mask,
    Pyramid,
    Stack,
    TensorType,
    Tokens,
    expect_image,
    expect_mask,
    expect_pyramid,
    expect_stack,
    expect_tokens,
)
from vitgraph.vocabulary import Activation, DropRate, PosInt, activation

# -- the pyramid of backbone taps -------------------------------------------------------


def gather_taps(
    image: torch.Tensor, *taps: torch.Tensor, grids: tuple[tuple[int, int] | None, ...]
) -> tuple[torch.Tensor, ...]:
    """The taps as feature maps (tokens on a grid laid out on it); the image gives only
    the strides, at inference."""
    return tuple(
        tap if grid is None else tap.transpose(1, 2).unflatten(2, grid)
        for tap, grid in zip(taps, grids, strict=True)
    )


@register
class FeaturePyramid(Block):
    """Gather a backbone's taps into a pyramid: ``inputs: [input, tap, ...]`` (the image
    first, for the strides; then the taps, finest first: feature maps, or tokens on a
    grid without prefix tokens)."""

    kind: Literal["feature_pyramid"] = "feature_pyramid"
    role = "structural"
    arity = None

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], f"{self.kind}'s first input (the image)")
        if len(inputs) < 2:
            raise ShapeError(
                "feature_pyramid needs the image and at least one tap",
                hint="inputs: [input, layer4] (the image first, then the backbone's taps)",
            )
        levels, strides = [], []
        for k, tap in enumerate(inputs[1:], 1):
            if isinstance(tap, Tokens) and tap.grid is not None and not tap.prefix:
                tap = Image(tap.dim, *tap.grid)
            if not isinstance(tap, Image):
                raise ShapeError(
                    f"feature_pyramid input {k} must be a feature map or tokens on a grid without "
                    f"prefix tokens, but is {tap}",
                    hint="tap a stage's output before its class token is added",
                )
            stride = image.height // tap.height
            if stride * tap.height != image.height or stride * tap.width != image.width:
                raise ShapeError(
                    f"feature_pyramid input {k} ({tap}) is not the "
                    f"{image.height}x{image.width} image "
                    "at an integer stride",
                    hint="give an input size that every stage divides",
                )
            levels.append(tap)
            strides.append(stride)
        return self, Pyramid(tuple(levels), tuple(strides))

    def build(self, *inputs: TensorType) -> FunctionOp:
        grids = tuple(t.grid if isinstance(t, Tokens) else None for t in inputs[1:])
        return FunctionOp(gather_taps, {"grids": grids})


class LastLevels(nn.Module):
    """A 1×1 conv on the pyramid's last level (``proj``: HF's ``input_projection``)."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, 1)

    def forward(self, levels: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.proj(levels[-1])


@register
class InputProj(Block):
    """``input_proj`` (§3.2): a 1×1 conv from the backbone's last level (C5: 2048
    channels) to the transformer's width."""

    kind: Literal["input_proj"] = "input_proj"
    role = "conv"
    weight_init = "keep"  # the official code keeps nn.Conv2d's default
    dim: PosInt
    """Output channels (the transformer's d)."""
    levels: PosInt = 1
    """How many of the pyramid's last levels it projects (DETR: 1; several: Deformable
    DETR, #13)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        pyramid = expect_pyramid(inputs[0], self.kind)
        if self.levels > len(pyramid.levels):
            raise ShapeError(
                f"levels {self.levels} but the pyramid holds {len(pyramid.levels)} tap(s) "
                f"({pyramid})",
                field="levels",
                hint=f"levels at most {len(pyramid.levels)}, or add taps to the pyramid",
            )
        if self.levels != 1:
            raise ShapeError(
                f"input_proj projects one level (DETR); {self.levels} levels are Deformable DETR's",
                field="levels",
                hint="levels: 1, or kind: deformable_input_proj",
            )
        last = pyramid.levels[-1]
        return self, Image(self.dim, last.height, last.width)

    def build(self, *inputs: TensorType) -> nn.Module:
        return LastLevels(expect_pyramid(inputs[0], self.kind).levels[-1].channels, self.dim)


# -- the mask and the sine position encoding --------------------------------------------


def resize_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    """The pixel mask at the feature map's size (nearest, as the official
    ``F.interpolate(m[None].float(), size).bool()[0]``); None stays None (no padding)."""
    if mask is None:
        return None
    return F.interpolate(mask[None].float(), size=x.shape[-2:]).to(torch.bool)[0]


class MaskResize(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
        return resize_mask(x, mask)


@register
class FeatureMask(Block):
    """The image's valid-pixel mask resized to a feature map: ``inputs: [map, pixel_mask]``."""

    kind: Literal["feature_mask"] = "feature_mask"
    role = "structural"
    arity = 2

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = inputs[0]
        if isinstance(x, Tokens) and x.grid is not None:
            rows, cols = x.grid
        else:
            image = expect_image(x, f"{self.kind}'s first input")
            rows, cols = image.height, image.width
        expect_mask(inputs[1], f"{self.kind}'s second input")
        return self, Mask(rows, cols)

    def build(self, *inputs: TensorType) -> nn.Module:
        return MaskResize()


class SinePosition(nn.Module):
    """DETR's ``PositionEmbeddingSine`` (official ``position_encoding.py``)."""

    def __init__(self, dim: int, temperature: float, scale: float, offset: float = 0.0) -> None:
        super().__init__()
        self.per_axis, self.temperature, self.scale = dim // 2, temperature, scale
        self.offset = offset

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:  # every pixel valid: the cumsums are 1..rows and 1..cols
            ones = torch.ones_like(x[:1, 0])
        else:
            ones = mask.to(x.dtype)
        y = ones.cumsum(1)
        xs = ones.cumsum(2)
        # normalised by the last value (Deformable DETR first moves each count to the
        # pixel's centre: offset 0.5)
        y = (y - self.offset) / (y[:, -1:, :] + 1e-6) * self.scale
        xs = (xs - self.offset) / (xs[:, :, -1:] + 1e-6) * self.scale
        k = torch.arange(self.per_axis, device=x.device, dtype=x.dtype)
        dim_t = self.temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / self.per_axis)
        px, py = xs[..., None] / dim_t, y[..., None] / dim_t
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
        pos = torch.cat((py, px), dim=3).flatten(1, 2)  # y block, then x block: (B', N, d)
        return pos.expand(x.shape[0], -1, -1)


@register
class DetrSinePos(Block):
    """DETR's 2-D sine encoding (§A.4): the cumulative sums of the valid-pixel mask down
    and across, each normalised by its last value to [0, 2π], through ``d/2`` sine/cosine
    frequencies ``T^(2⌊i/2⌋/(d/2))``; the y block then the x block. Unlike
    ``sincos2d_pos`` it follows the padding: ``inputs: [map, mask]`` -> tokens on the
    map's grid (to add to q and k, not to the stream)."""

    kind: Literal["detr_sine_pos"] = "detr_sine_pos"
    role = "position"
    arity = 2
    temperature: float = 10000.0
    """T of the frequencies."""
    scale: float = 2 * math.pi
    """What the normalised coordinate reaches at the last valid pixel."""
    offset: float = 0.0
    """Subtracted from each cumulative count before normalising (DETR: 0; Deformable
    DETR: 0.5, the pixel's centre)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], f"{self.kind}'s first input")
        mask = expect_mask(inputs[1], f"{self.kind}'s second input")
        if (mask.height, mask.width) != (image.height, image.width):
            raise ShapeError(f"the {mask} does not fit the {image}", hint="resize it: feature_mask")
        if image.channels % 4:
            raise ShapeError(
                f"{image.channels} channels: the y and x blocks need a multiple of 4",
                hint="a transformer width divisible by 4",
            )
        return self, Tokens(image.channels, (image.height, image.width))

    def build(self, *inputs: TensorType) -> nn.Module:
        return SinePosition(
            expect_image(inputs[0], self.kind).channels, self.temperature, self.scale, self.offset
        )


# -- attention with positions on q and k ------------------------------------------------


def key_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A ``(B, rows, cols)`` valid-pixel mask as SDPA's ``(B, 1, 1, N)`` key mask."""
    return None if mask is None else mask.flatten(1)[:, None, None, :]


class PosAttention(nn.Module):
    """Multi-head attention over separate q, k, v inputs (the caller adds the positions to
    q and k only): q, k, v and output projections, as ``nn.MultiheadAttention``."""

    def __init__(self, dim: int, heads: int, attn_drop: float, bias: bool = True) -> None:
        super().__init__()
        self.heads, self.attn_drop = heads, attn_drop
        self.q = nn.Linear(dim, dim, bias=bias)
        self.k = nn.Linear(dim, dim, bias=bias)
        self.v = nn.Linear(dim, dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.heads
        out = attend(
            split_heads(self.q(q), h),
            split_heads(self.k(k), h),
            split_heads(self.v(v), h),
            self.attn_drop,
            self.training,
            mask=key_mask(mask),
        )
        return self.proj(merge_heads(out))


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str, act_drop: float, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = activation(act)
        self.drop1 = nn.Dropout(act_drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class _Layer(Block):
    """The params DETR's encoder and decoder layers share (official defaults)."""

    role = "block"
    weight_init = "xavier_uniform"  # official Transformer._reset_parameters
    heads: PosInt = 8
    """Attention heads."""
    ffn: PosInt = 2048
    """FFN hidden width."""
    act: Activation = "relu"
    """FFN activation."""
    drop: DropRate = 0.1
    """Dropout after each attention and the FFN (before the residual sum)."""
    act_drop: DropRate = 0.0
    """Dropout after the FFN activation (official: the same 0.1; HF: activation_dropout)."""
    attn_drop: DropRate = 0.0
    """Dropout on the attention weights."""
    eps: float = 1e-5
    """LayerNorm epsilon."""

    def _tokens(self, t: TensorType, what: str) -> Tokens:
        tokens = expect_tokens(t, what)
        if tokens.dim % self.heads:
            raise ShapeError(
                f"heads {self.heads} must divide the width {tokens.dim}",
                field="heads",
                hint="a head count that divides the width",
            )
        return tokens

    def _same(self, a: Tokens, b: TensorType, what: str) -> None:
        b = expect_tokens(b, what)
        if (b.length, b.dim) != (a.length, a.dim):
            raise ShapeError(f"{what} ({b}) does not match the stream ({a})")


class EncoderLayer(nn.Module):
    def __init__(self, p: _Layer, dim: int) -> None:
        super().__init__()
        self.self_attn = PosAttention(dim, p.heads, p.attn_drop)
        self.drop1 = nn.Dropout(p.drop)
        self.norm1 = nn.LayerNorm(dim, eps=p.eps)
        self.mlp = FFN(dim, p.ffn, p.act, p.act_drop, p.drop)
        self.norm2 = nn.LayerNorm(dim, eps=p.eps)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        qk = x + pos
        x = self.norm1(x + self.drop1(self.self_attn(qk, qk, x, mask)))
        return self.norm2(x + self.mlp(x))


@register
class DetrEncoderLayer(_Layer):
    """Post-norm encoder layer (§3.2, Fig. 10): ``x = LN(x + attn(q=k=x+pos, v=x))``,
    ``x = LN(x + FFN(x))``; ``inputs: [tokens, pos, mask]``, padded pixels masked out of
    the keys."""

    kind: Literal["detr_encoder_layer"] = "detr_encoder_layer"
    arity = 3

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = self._tokens(inputs[0], self.kind)
        self._same(x, inputs[1], f"{self.kind}'s position input")
        mask = expect_mask(inputs[2], f"{self.kind}'s third input")
        if x.grid != (mask.height, mask.width):
            raise ShapeError(f"the {mask} does not fit the tokens ({x})")
        return self, x

    def build(self, *inputs: TensorType) -> nn.Module:
        return EncoderLayer(self, expect_tokens(inputs[0], self.kind).dim)


class DecoderLayer(nn.Module):
    def __init__(self, p: DetrDecoderLayer, dim: int) -> None:
        super().__init__()
        self.self_attn = PosAttention(dim, p.heads, p.attn_drop, p.attn_bias)
        self.drop1 = nn.Dropout(p.drop)
        self.norm1 = nn.LayerNorm(dim, eps=p.eps)
        self.cross_attn = PosAttention(dim, p.heads, p.attn_drop, p.attn_bias)
        self.drop2 = nn.Dropout(p.drop)
        self.norm2 = nn.LayerNorm(dim, eps=p.eps)
        self.mlp = FFN(dim, p.ffn, p.act, p.act_drop, p.drop)
        self.norm3 = nn.LayerNorm(dim, eps=p.eps)
        self.pre_norm = p.pre_norm

    def forward(
        self,
        t: torch.Tensor,
        memory: torch.Tensor,
        query_pos: torch.Tensor,
        pos: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.pre_norm:  # IPT §3.1: x + f(LN(x)); no memory positions, no padding
            s = self.norm1(t)
            qk = s + query_pos
            t = t + self.drop1(self.self_attn(qk, qk, s))
            s = self.norm2(t)
            keys = memory if pos is None else memory + pos
            t = t + self.drop2(self.cross_attn(s + query_pos, keys, memory, mask))
            return t + self.mlp(self.norm3(t))
        assert pos is not None
        qk = t + query_pos
        t = self.norm1(t + self.drop1(self.self_attn(qk, qk, t)))
        cross = self.cross_attn(t + query_pos, memory + pos, memory, mask)
        t = self.norm2(t + self.drop2(cross))
        return self.norm3(t + self.mlp(t))


@register
class DetrDecoderLayer(_Layer):
    """Post-norm decoder layer (§3.2, Fig. 10): self-attention among the queries
    (q = k = t + query_pos), cross-attention to the encoder's memory (q = t + query_pos,
    k = memory + pos, v = memory; padding masked), FFN, each followed by LayerNorm.
    ``inputs: [target, memory, query_pos, memory_pos, mask]``; with ``pre_norm`` (IPT's
    decoder) the memory positions and mask may be left out: ``[target, memory, query_pos]``.
    """

    kind: Literal["detr_decoder_layer"] = "detr_decoder_layer"
    arity = None  # 5, or 3 with pre_norm
    pre_norm: bool = False
    """LayerNorm before each attention and the FFN, inside the residual (IPT,
    arXiv:2012.00364 §3.1, Eq. 4-5); false: after each residual sum (DETR)."""
    attn_bias: bool = True
    """Biases in the attentions' q, k, v and output projections (IPT: none)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        if len(inputs) not in (3, 5) or (len(inputs) == 3 and not self.pre_norm):
            raise ShapeError(
                f"{self.kind} takes [target, memory, query_pos, memory_pos, mask]"
                + (" or, with pre_norm, [target, memory, query_pos]" if self.pre_norm else "")
                + f", but receives {len(inputs)} input(s)",
                hint="name the inputs with inputs: [...]",
            )
        t = self._tokens(inputs[0], self.kind)
        memory = expect_tokens(inputs[1], f"{self.kind}'s memory (second input)")
        if memory.dim != t.dim:
            raise ShapeError(f"the memory ({memory}) is not as wide as the queries ({t})")
        self._same(t, inputs[2], f"{self.kind}'s query positions (third input)")
        if len(inputs) == 3:
            return self, t
        self._same(memory, inputs[3], f"{self.kind}'s memory positions (fourth input)")
        mask = expect_mask(inputs[4], f"{self.kind}'s mask (fifth input)")
        if mask.height * mask.width != memory.patches:
            raise ShapeError(f"the {mask} does not fit the memory ({memory})")
        return self, t

    def build(self, *inputs: TensorType) -> nn.Module:
        return DecoderLayer(self, expect_tokens(inputs[0], self.kind).dim)


# -- object queries, the shared norm, the heads -----------------------------------------


class Queries(nn.Module):
    def __init__(self, queries: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(queries, dim))  # nn.Embedding's N(0, 1)

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        return self.weight.expand(memory.shape[0], -1, -1)


@register
class ObjectQueries(Block):
    """The learned object queries (§3.2 "N ... learnt positional encodings that we refer
    to as object queries"): ``queries × d`` positions, one set per image of its input's
    batch."""

    kind: Literal["object_queries"] = "object_queries"
    role = "position"
    weight_init = "keep"
    queries: PosInt = 100
    """N, the most objects an image can hold."""
    dim: PosInt | None = None
    """Width; default: the input's."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = inputs[0]
        width = self.dim or (
            x.dim if isinstance(x, Tokens) else expect_image(x, self.kind).channels
        )
        return self.model_copy(update={"dim": width}), Tokens(width, None, count=self.queries)

    def build(self, *inputs: TensorType) -> nn.Module:
        assert self.dim is not None
        return Queries(self.queries, self.dim)


@register
class Zeros(Block):
    """Zeros of its input's type: DETR's decoder target before the first layer (§3.2)."""

    kind: Literal["zeros_like"] = "zeros_like"
    role = "structural"

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        return self, inputs[0]

    def build(self, *inputs: TensorType):
        return torch.zeros_like


def stack_layers(*layers: torch.Tensor) -> torch.Tensor:
    return torch.stack(layers)


@register
class StackLayers(Block):
    """Several layers' outputs of one type stacked ``(L, B, N, D)``: every decoder
    layer's, which the auxiliary losses read (§3.2)."""

    kind: Literal["stack_layers"] = "stack_layers"
    role = "structural"
    arity = None

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        first = expect_tokens(inputs[0], self.kind)
        for k, t in enumerate(inputs[1:], 1):
            if expect_tokens(t, self.kind) != first:
                raise ShapeError(f"stack_layers input {k} ({t}) differs from input 0 ({first})")
        return self, Stack(len(inputs), first)

    def build(self, *inputs: TensorType) -> FunctionOp:
        return FunctionOp(stack_layers)


@register
class SharedNorm(Block):
    """One LayerNorm over each of the stacked layers' outputs: DETR's decoder norm, shared
    by the prediction of every decoder layer (§3.2 "auxiliary decoding losses ... a shared
    layer-norm")."""

    kind: Literal["shared_norm"] = "shared_norm"
    role = "norm"
    weight_init = "keep"  # nn.LayerNorm's ones and zeros, as the official decoder norm
    eps: float = 1e-5
    """LayerNorm epsilon."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        return self, expect_stack(inputs[0], self.kind)

    def build(self, *inputs: TensorType) -> nn.Module:
        return nn.LayerNorm(expect_stack(inputs[0], self.kind).item.dim, eps=self.eps)


class BoxMLP(nn.Module):
    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        widths = [dim] * layers + [4]
        pairs = zip(widths[:-1], widths[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, layer in enumerate(self.layers):
            x = layer(x) if k == len(self.layers) - 1 else F.relu(layer(x))
        return x.sigmoid()


class Heads(nn.Module):
    """Class logits and boxes of the last layer; in training, also every earlier layer's
    (the auxiliary losses)."""

    def __init__(self, dim: int, classes: int, box_layers: int) -> None:
        super().__init__()
        self.class_embed = nn.Linear(dim, classes + 1)
        self.bbox_embed = BoxMLP(dim, box_layers)

    def forward(self, hs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.training:
            last = hs[-1]
            return self.class_embed(last), self.bbox_embed(last)
        logits, boxes = self.class_embed(hs), self.bbox_embed(hs)
        return logits[-1], boxes[-1], logits[:-1], boxes[:-1]


@register
class DetrHead(Block):
    """The prediction FFNs (§3.2): a linear class head over ``classes`` + "no object", and
    a ``box_layers``-layer ReLU MLP to a sigmoid box (normalised cx, cy, w, h), shared by
    every decoder layer. Eval returns ``(logits, boxes)``; training adds the earlier
    layers' stacked ``(aux_logits, aux_boxes)`` for the auxiliary losses."""

    kind: Literal["detr_head"] = "detr_head"
    role = "head"
    weight_init = "keep"
    objective = "detection"
    classes: PosInt = 91
    """Object classes (COCO: 91 ids); the logits add one "no object" class."""
    box_layers: PosInt = 3
    """Layers of the box MLP."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        stack = expect_stack(inputs[0], self.kind)
        return self, Detections(stack.item.length, self.classes + 1, stack.layers)

    def build(self, *inputs: TensorType) -> nn.Module:
        return Heads(expect_stack(inputs[0], self.kind).item.dim, self.classes, self.box_layers)
