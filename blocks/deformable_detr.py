"""Deformable DETR's blocks (Zhu et al., arXiv:2010.04159): per-level input projections
with GroupNorm and strided extra levels (§4.1, App. A.2), the flattened multi-scale
memory with its level embedding and encoder reference points (§4.1, App. A.2), multi-scale
deformable attention (eq. 3; the pure PyTorch ``grid_sample`` path), the encoder and
decoder layers, object queries with learned reference points or two-stage encoder
proposals (App. A.4), iterative box refinement (App. A.4) and the sigmoid (focal-loss)
class heads with their prior-probability bias.

Module names follow the official code (``sampling_offsets``, ``attention_weights``,
``value_proj``, ``output_proj``, ``level_embed``, ``reference_points``, ``enc_output``,
``pos_trans``, ``class_embed``, ``bbox_embed.layers``);
``vitgraph/interop/hf_deformable_detr.py`` maps HF's keys.
"""

from __future__ import annotations

import math
from typing import Literal, Self

import torch
import torch.nn.functional as F
from torch import nn

from vitgraph.block import Block
from vitgraph.blocks.detr import FFN, PosAttention, SinePosition, resize_mask
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import (
    Detections,
    Image,
    MultiScale,
    Pyramid,
    QueryState,
    TensorType,
    conv_out,
    expect_mask,
    expect_multi_scale,
    expect_pyramid,
    expect_query_state,
)
from vitgraph.vocabulary import Activation, DropRate, PosInt

GROUPS = 32  # GroupNorm(32, d) after every input projection (official deformable_detr.py)
PRIOR = 0.01  # the focal head's initial foreground probability (RetinaNet §4.1)
#: the learning-rate factor of the sampling offsets and the reference-point projections
#: (official main.py: ``lr_linear_proj_names`` trained at ``lr_linear_proj_mult`` 0.1);
#: declared on those modules as ``lr_scale``, which the training objectives honour
LINEAR_PROJ_LR = 0.1

# -- input projections ---------------------------------------------------------------------


class LevelProj(nn.Module):
    """One level's projection: a conv then GroupNorm(32) (``input_proj.k.0/1`` officially)."""

    def __init__(self, channels: int, dim: int, strided: bool) -> None:
        super().__init__()
        if strided:  # an extra level: 3x3, stride 2
            self.conv = nn.Conv2d(channels, dim, 3, stride=2, padding=1)
        else:
            self.conv = nn.Conv2d(channels, dim, 1)
        self.norm = nn.GroupNorm(GROUPS, dim)
        nn.init.xavier_uniform_(self.conv.weight)  # official: xavier, zero bias
        assert self.conv.bias is not None
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class MultiLevelProj(nn.Module):
    def __init__(self, channels: tuple[int, ...], dim: int, extra: int) -> None:
        super().__init__()
        tail = [LevelProj(channels[-1] if k == 0 else dim, dim, True) for k in range(extra)]
        self.levels = nn.ModuleList([LevelProj(c, dim, False) for c in channels] + tail)
        self.taps = len(channels)

    def forward(self, levels: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        # the pyramid's last taps (negative indices: a proxy has no len when traced)
        out = [self.levels[k](levels[k - self.taps]) for k in range(self.taps)]
        last = levels[-1]  # the first extra level reads the raw last tap, the next ones
        for proj in self.levels[self.taps :]:  # the previous extra level
            last = proj(last)
            out.append(last)
        return tuple(out)


@register
class DeformableInputProj(Block):
    """The multi-scale input projections (§4.1 "Multi-scale Feature Maps", Fig. 4): each of
    the pyramid's last ``taps`` levels through a 1×1 conv + GroupNorm(32) to width d, then
    ``levels - taps`` extra levels, each a stride-2 3×3 conv + GroupNorm(32) (the first on
    the raw last tap: C5 → C6). Single-scale (§5.2 Table 2): ``levels: 1, taps: 1``."""

    kind: Literal["deformable_input_proj"] = "deformable_input_proj"
    role = "conv"
    weight_init = "keep"  # build draws the official xavier convs
    dim: PosInt
    """Output channels (the transformer's d); a multiple of 32 for GroupNorm(32)."""
    levels: PosInt = 4
    """Feature levels out (the paper's L): the projected taps, then strided extra levels."""
    taps: PosInt | None = None
    """How many of the pyramid's last levels are projected; default: all of them."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        pyramid = expect_pyramid(inputs[0], self.kind)
        taps = len(pyramid.levels) if self.taps is None else self.taps
        if taps > len(pyramid.levels):
            raise ShapeError(
                f"taps {taps} but the pyramid holds {len(pyramid.levels)} ({pyramid})",
                field="taps",
                hint=f"taps at most {len(pyramid.levels)}, or add taps to the pyramid",
            )
        kept = pyramid.levels[len(pyramid.levels) - taps :]
        if self.dim % GROUPS:
            raise ShapeError(
                f"dim {self.dim} is not a multiple of {GROUPS}: each level's GroupNorm "
                f"has {GROUPS} groups",
                field="dim",
                hint=f"dim: {max(GROUPS, self.dim // GROUPS * GROUPS)} or "
                f"{(self.dim // GROUPS + 1) * GROUPS}",
            )
        if self.levels < taps:
            raise ShapeError(
                f"levels {self.levels} but {taps} taps are projected ({pyramid}): every "
                "tap is one level, extra levels come after them",
                field="levels",
                hint=f"levels: {taps} (or more), or taps: {self.levels}",
            )
        maps = [Image(self.dim, m.height, m.width) for m in kept]
        strides = list(pyramid.strides[len(pyramid.levels) - taps :])
        for _ in range(self.levels - taps):
            h, w = (conv_out(n, 3, 2, 1) for n in (maps[-1].height, maps[-1].width))
            maps.append(Image(self.dim, h, w))
            strides.append(strides[-1] * 2)
        for k, (m, s) in enumerate(zip(maps, strides, strict=True)):
            if min(m.height, m.width) < 2:
                side = 2 * s
                raise ShapeError(
                    f"level {k} is {m.height}x{m.width} (stride {s}): a level needs at "
                    "least 2x2 pixels (a 1x1 level has no layout for the deformable "
                    "attention to sample around, and GroupNorm sees d/32 values a group)",
                    field="levels",
                    hint=f"a larger input ({side}x{side} keeps this level at least 2x2)"
                    + (f", or levels: {k}" if k >= taps else ""),
                )
        return self.model_copy(update={"taps": taps}), Pyramid(tuple(maps), tuple(strides))

    def build(self, *inputs: TensorType) -> nn.Module:
        assert self.taps is not None
        levels = expect_pyramid(inputs[0], self.kind).levels[-self.taps :]
        return MultiLevelProj(tuple(m.channels for m in levels), self.dim, self.levels - self.taps)


# -- the flattened multi-scale memory ------------------------------------------------------


def valid_ratios(mask: torch.Tensor) -> torch.Tensor:
    """The valid share of a level's width and height ``(B, 2)``, from its first row and
    column (official ``get_valid_ratio``: images are padded right and down)."""
    h, w = mask.shape[1], mask.shape[2]
    return torch.stack((mask[:, 0, :].sum(1) / w, mask[:, :, 0].sum(1) / h), -1)


def level_geometry(x: torch.Tensor, level: int) -> tuple[torch.Tensor, ...]:
    """One level's geometry from its map ``(B, C, h, w)``, by tensor ops only (the module
    traces with symbolic sizes): each pixel's centre ``(h·w, 2)`` in pixels (x + 0.5,
    y + 0.5), the level's (w, h) per pixel ``(h·w, 2)`` and once ``(2,)``, and the level's
    index per pixel."""
    ones = torch.ones_like(x[0, 0])  # (h, w)
    xs, ys = ones.cumsum(1), ones.cumsum(0)
    size = torch.stack((xs[-1:, -1:], ys[-1:, -1:]), -1).flatten()  # (w, h)
    centres = torch.stack((xs - 0.5, ys - 0.5), -1).flatten(0, 1)
    return centres, size.expand_as(centres), size, (ones.flatten() * level).long()


class Memory(nn.Module):
    """Flatten the levels finest first; positions = sine encoding + the level's embedding.
    Returns the ``MultiScale`` tuple: tokens, positions, valid (B, S) or None, ratios
    (B, L, 2), references (B, S, L, 2) — each pixel's centre normalised by its level's
    valid size, then seen from every level through that level's valid ratio (official
    ``get_reference_points``) —, the levels' (h, w), their (w, h) ``(L, 2)``, and per
    pixel its centre, its level's (w, h) and its level."""

    def __init__(self, dim: int, levels: int, temperature: float) -> None:
        super().__init__()
        self.levels = levels
        self.level_embed = nn.Parameter(torch.randn(levels, dim))  # official normal_
        self.sine = SinePosition(dim, temperature, 2 * math.pi, offset=0.5)

    def forward(self, maps: tuple[torch.Tensor, ...], mask: torch.Tensor | None):
        tokens, pos, valid, ratios, shapes, geometry = [], [], [], [], [], []
        for k in range(self.levels):
            x = maps[k]
            m = resize_mask(x, mask)  # every level's mask from the pixel mask
            shapes.append((x.shape[-2], x.shape[-1]))
            geometry.append(level_geometry(x, k))
            tokens.append(x.flatten(2).transpose(1, 2))
            pos.append(self.sine(x, m) + self.level_embed[k])
            if m is not None:
                valid.append(m.flatten(1))
                ratios.append(valid_ratios(m).to(x.dtype))
        x = torch.cat(tokens, 1)
        if mask is None:
            ratio = x.new_ones(x.shape[0], self.levels, 2)
            keep = None
        else:
            ratio, keep = torch.stack(ratios, 1), torch.cat(valid, 1)
        centres, sizes, size, level_of = (torch.cat(parts) for parts in zip(*geometry, strict=True))
        own = ratio[:, level_of]  # (B, S, 2): each pixel's own level's ratio
        references = (centres / sizes / own)[:, :, None] * ratio[:, None]
        size = size.view(self.levels, 2)
        return x, torch.cat(pos, 1), keep, ratio, references, shapes, size, centres, sizes, level_of


@register
class MultiScaleTokens(Block):
    """The encoder's input (§4.1, App. A.2): every level flattened into one sequence,
    finest first, its positions the sine encoding of the level's valid-pixel mask (each
    count moved to the pixel centre, −0.5, before normalising) plus a learned per-level
    embedding; beside it the padding mask of every level, the valid ratios and each
    pixel's reference point. ``inputs: [levels, pixel_mask]``."""

    kind: Literal["multi_scale_tokens"] = "multi_scale_tokens"
    role = "position"
    arity = 2
    weight_init = "keep"  # the level embedding ~ N(0, 1), as officially
    temperature: float = 10000.0
    """T of the sine frequencies."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        pyramid = expect_pyramid(inputs[0], f"{self.kind}'s first input")
        expect_mask(inputs[1], f"{self.kind}'s second input (the pixel mask)")
        dims = {m.channels for m in pyramid.levels}
        if len(dims) != 1:
            raise ShapeError(
                f"the levels must share one width, but the {pyramid} does not",
                hint="project them first: kind: deformable_input_proj",
            )
        if dims.pop() % 4:
            raise ShapeError("the width must be a multiple of 4 (the y and x sine blocks)")
        shapes = tuple((m.height, m.width) for m in pyramid.levels)
        dim = pyramid.levels[0].channels
        return self, MultiScale(dim, shapes, pyramid.strides)

    def build(self, *inputs: TensorType) -> nn.Module:
        pyramid = expect_pyramid(inputs[0], self.kind)
        return Memory(pyramid.levels[0].channels, len(pyramid.levels), self.temperature)


# -- multi-scale deformable attention ------------------------------------------------------


class DeformAttn(nn.Module):
    """Multi-scale deformable attention (eq. 3): each query samples ``points`` values per
    head and level at its reference point plus learned offsets (bilinear, zero outside),
    weighted by a softmax over the levels × points. The pure PyTorch path (official
    ``ms_deform_attn_core_pytorch``): one ``grid_sample`` per level. ``coords`` of the
    references: 2 (points; offsets in pixels of each level) or 4 (boxes; offsets in half
    box sides)."""

    def __init__(self, dim: int, heads: int, levels: int, points: int, coords: int = 2) -> None:
        super().__init__()
        self.heads, self.levels, self.points, self.coords = heads, levels, points, coords
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        setattr(self.sampling_offsets, "lr_scale", LINEAR_PROJ_LR)  # noqa: B010 (a float)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self._reset()

    @torch.no_grad()
    def _reset(self) -> None:
        """Official ``MSDeformAttn._reset_parameters``: zero offset weights, the offset
        biases a ring of directions (one per head) at distances 1..points; uniform
        attention; xavier projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        ring = torch.stack((theta.cos(), theta.sin()), -1)
        ring = ring / ring.abs().max(-1, keepdim=True)[0]
        ring = ring[:, None, None, :].repeat(1, self.levels, self.points, 1)
        ring *= torch.arange(1, self.points + 1, dtype=torch.float32)[None, None, :, None]
        self.sampling_offsets.bias.copy_(ring.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference: torch.Tensor,
        value: torch.Tensor,
        valid: torch.Tensor | None,
        shapes: list[tuple[int, int]],
        sizes: torch.Tensor,
    ) -> torch.Tensor:
        """``shapes``: each level's (h, w); ``sizes``: ``(L, 2)`` their (w, h)."""
        b, q = query.shape[0], query.shape[1]
        h, lv, p = self.heads, self.levels, self.points
        v = self.value_proj(value)
        if valid is not None:  # padded pixels give zero values
            v = v.masked_fill(~valid[..., None], 0.0)
        offsets = self.sampling_offsets(query).view(b, q, h, lv, p, 2)
        weights = self.attention_weights(query).view(b, q, h, lv * p).softmax(-1)
        if self.coords == 2:  # offsets in pixels of each level
            size = sizes[None, None, None, :, None]
            where = reference[:, :, None, :, None, :] + offsets / size
        else:  # offsets relative to the reference box's half size
            half = reference[:, :, None, :, None, 2:] * 0.5
            where = reference[:, :, None, :, None, :2] + offsets / p * half
        out = deformable_sample(
            v.unflatten(-1, (h, -1)), shapes, where, weights.view(b, q, h, lv, p), lv
        )
        return self.output_proj(out)


def deformable_sample(
    value: torch.Tensor,
    shapes: tuple[tuple[int, int], ...] | list[tuple[int, int]],
    where: torch.Tensor,
    weights: torch.Tensor,
    levels: int | None = None,
) -> torch.Tensor:
    """The sampling core of eq. 3: ``value`` ``(B, S, heads, c)``, ``where`` ``(B, Q, heads,
    L, P, 2)`` in [0, 1] (x, y), ``weights`` ``(B, Q, heads, L, P)`` -> ``(B, Q, heads·c)``:
    each level's values bilinearly sampled (zero outside, pixel centres at (i + 0.5) / side)
    and summed with the weights. ``levels``: how many (when ``shapes`` is symbolic)."""
    b, h, c = value.shape[0], value.shape[2], value.shape[3]
    q, lv, p = where.shape[1], where.shape[3], where.shape[4]
    grids = 2 * where - 1  # grid_sample's [-1, 1]
    sampled, start = [], 0
    for k in range(len(shapes) if levels is None else levels):
        rows, cols = shapes[k][0], shapes[k][1]
        part = value[:, start : start + rows * cols]
        start = start + rows * cols
        level = part.flatten(2).transpose(1, 2).reshape(b * h, c, rows, cols)
        grid = grids[:, :, :, k].transpose(1, 2).flatten(0, 1)  # (B*h, Q, P, 2)
        sampled.append(F.grid_sample(level, grid, align_corners=False))  # (B*h, c, Q, P)
    weights = weights.transpose(1, 2).reshape(b * h, 1, q, lv * p)
    out = (torch.stack(sampled, -2).flatten(-2) * weights).sum(-1)  # (B*h, c, Q)
    return out.view(b, h * c, q).transpose(1, 2)


class _DeformLayer(Block):
    """The params Deformable DETR's encoder and decoder layers share (official defaults)."""

    role = "block"
    weight_init = "keep"  # build draws the official xavier kernels
    heads: PosInt = 8
    """Attention heads (M)."""
    points: PosInt = 4
    """Sampling points per head and level (K)."""
    levels: PosInt | None = None
    """Feature levels the attention samples (L); default: the memory's."""
    ffn: PosInt = 1024
    """FFN hidden width."""
    act: Activation = "relu"
    """FFN activation."""
    drop: DropRate = 0.1
    """Dropout after each attention and after the FFN."""
    act_drop: DropRate = 0.1
    """Dropout after the FFN activation (official: the same 0.1; HF: activation_dropout)."""
    eps: float = 1e-5
    """LayerNorm epsilon."""

    def _memory(self, t: TensorType, what: str) -> tuple[Self, MultiScale]:
        memory = expect_multi_scale(t, what)
        levels = len(memory.shapes)
        if self.levels is not None and self.levels != levels:
            raise ShapeError(
                f"levels {self.levels} but the memory holds {levels} ({memory})",
                field="levels",
                hint=f"levels: {levels}, or change the input projection's levels",
            )
        if memory.dim % self.heads:
            raise ShapeError(
                f"heads {self.heads} must divide the width {memory.dim}",
                field="heads",
                hint="a head count that divides the width",
            )
        return self.model_copy(update={"levels": levels}), memory


def _xavier(module: nn.Module) -> None:
    """Official ``DeformableTransformer._reset_parameters``: every kernel xavier-uniform
    (the attention's own init then redone by ``DeformAttn._reset``)."""
    for m in module.modules():
        if isinstance(m, nn.Linear) and not isinstance(m, DeformAttn):
            nn.init.xavier_uniform_(m.weight)
    for m in module.modules():
        if isinstance(m, DeformAttn):
            m._reset()


class EncoderLayer(nn.Module):
    def __init__(self, p: _DeformLayer, memory: MultiScale) -> None:
        super().__init__()
        dim = memory.dim
        self.self_attn = DeformAttn(dim, p.heads, len(memory.shapes), p.points)
        self.drop1 = nn.Dropout(p.drop)
        self.norm1 = nn.LayerNorm(dim, eps=p.eps)
        self.mlp = FFN(dim, p.ffn, p.act, p.act_drop, p.drop)
        self.norm2 = nn.LayerNorm(dim, eps=p.eps)
        _xavier(self)

    def forward(self, memory: tuple) -> tuple:
        # indexed, not unpacked: a traced tuple input is one proxy
        x, pos, valid, ref = memory[0], memory[1], memory[2], memory[4]
        attn = self.self_attn(x + pos, ref, x, valid, memory[5], memory[6])
        x = self.norm1(x + self.drop1(attn))
        x = self.norm2(x + self.mlp(x))
        return (x, *(memory[i] for i in range(1, 10)))  # the rest unchanged (indexed: traced)


@register
class DeformableEncoderLayer(_DeformLayer):
    """Post-norm encoder layer (§4.1 "Deformable Transformer Encoder"): every pixel of every
    level attends deformably to all levels around its own reference point (q = x + pos);
    LayerNorm after the attention and after the FFN. Multi-scale tokens in and out."""

    kind: Literal["deformable_encoder_layer"] = "deformable_encoder_layer"

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        return self._memory(inputs[0], self.kind)

    def build(self, *inputs: TensorType) -> nn.Module:
        return EncoderLayer(self, expect_multi_scale(inputs[0], self.kind))


# -- object queries ------------------------------------------------------------------------


class BoxDelta(nn.Module):
    """The 3-layer ReLU box MLP, un-squashed: its output is added to the reference's
    inverse sigmoid (official ``MLP``; ``layers`` as DETR's ``bbox_embed.layers``)."""

    def __init__(self, dim: int, wh_bias: float = 0.0) -> None:
        super().__init__()
        last = nn.Linear(dim, 4)
        nn.init.zeros_(last.weight)  # official: a zero last layer, the box starting at
        nn.init.zeros_(last.bias)  # its reference
        nn.init.constant_(last.bias[2:], wh_bias)
        self.layers = nn.ModuleList([nn.Linear(dim, dim), nn.Linear(dim, dim), last])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[2](F.relu(self.layers[1](F.relu(self.layers[0](x)))))


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def refine(delta: torch.Tensor, reference: torch.Tensor, coords: int) -> torch.Tensor:
    """A box from a predicted delta and its reference (``coords`` 2, centres: only cx, cy
    move)."""
    if coords == 4:
        return (delta + inverse_sigmoid(reference)).sigmoid()
    centre = delta[..., :2] + inverse_sigmoid(reference)
    return torch.cat((centre, delta[..., 2:]), -1).sigmoid()


def class_head(dim: int, classes: int) -> nn.Linear:
    head = nn.Linear(dim, classes)
    nn.init.constant_(head.bias, -math.log((1 - PRIOR) / PRIOR))  # focal prior (§A.2)
    return head


class LearnedQueries(nn.Module):
    """Queries and their positions from one embedding ``(Q, 2d)``; reference points from
    the positions (official: ``reference_points`` linear + sigmoid)."""

    def __init__(self, queries: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.query_embed = nn.Parameter(torch.randn(queries, 2 * dim))  # nn.Embedding's
        self.reference_points = nn.Linear(dim, 2)
        setattr(self.reference_points, "lr_scale", LINEAR_PROJ_LR)  # noqa: B010 (a float)
        nn.init.xavier_uniform_(self.reference_points.weight)
        nn.init.zeros_(self.reference_points.bias)

    def forward(self, memory: tuple) -> tuple:
        both = self.query_embed.expand(memory[0].shape[0], -1, -1)
        pos, target = both[..., : self.dim], both[..., self.dim :]
        return target, pos, self.reference_points(pos).sigmoid(), None, ()


class Proposals(nn.Module):
    """Two-stage queries (App. A.4): every valid pixel proposes a box (its centre, side
    0.05·2^level) that a class head scores and a box head refines; the top ``queries``
    foreground scores' boxes (detached) are the decoder's references, their sine encoding
    through ``pos_trans`` its positions and targets."""

    def __init__(self, queries: int, dim: int, classes: int, levels: int) -> None:
        super().__init__()
        self.queries, self.dim, self.levels = queries, dim, levels
        self.enc_output = nn.Linear(dim, dim)
        self.enc_output_norm = nn.LayerNorm(dim)
        self.class_embed = class_head(dim, classes)
        self.bbox_embed = BoxDelta(dim)
        self.pos_trans = nn.Linear(2 * dim, 2 * dim)
        self.pos_trans_norm = nn.LayerNorm(2 * dim)
        nn.init.xavier_uniform_(self.enc_output.weight)
        nn.init.xavier_uniform_(self.pos_trans.weight)

    def _proposals(self, memory: tuple):
        """Every pixel's box, as logits (+inf where padded or too close to the border), and
        the memory with those pixels zeroed (official ``gen_encoder_output_proposals``)."""
        x, valid, shapes, centres, sizes, level_of = (memory[i] for i in (0, 2, 5, 7, 8, 9))
        if valid is None:
            centres = (centres / sizes)[None].expand(x.shape[0], -1, -1)
        else:  # normalised by each level's valid width and height
            valid_sizes, start = [], 0
            for k in range(self.levels):
                h, w = shapes[k][0], shapes[k][1]
                m = valid[:, start : start + h * w].view(-1, h, w)
                size = torch.stack((m[:, 0, :].sum(1), m[:, :, 0].sum(1)), -1).to(x.dtype)
                valid_sizes.append(size[:, None].expand(-1, h * w, -1))
                start = start + h * w
            centres = centres[None] / torch.cat(valid_sizes, 1)
        side = (0.05 * 2.0**level_of).to(x.dtype)[None, :, None].expand_as(centres)
        boxes = torch.cat((centres, side), -1)
        inside = ((boxes > 0.01) & (boxes < 0.99)).all(-1, keepdim=True)
        logit = torch.log(boxes / (1 - boxes))
        keep = inside if valid is None else inside & valid[..., None]
        return logit.masked_fill(~keep, float("inf")), x.masked_fill(~keep, 0.0)

    def forward(self, memory: tuple) -> tuple:
        logit, x = self._proposals(memory)
        x = self.enc_output_norm(self.enc_output(x))
        scores = self.class_embed(x)
        boxes = self.bbox_embed(x) + logit
        top = scores[..., 0].topk(self.queries, dim=1)[1]  # the first class, as officially
        chosen = boxes.gather(1, top[..., None].expand(-1, -1, 4)).detach()
        both = self.pos_trans_norm(self.pos_trans(box_sine(chosen, self.dim // 2)))
        pos, target = both[..., : self.dim], both[..., self.dim :]
        return target, pos, chosen.sigmoid(), None, (scores, boxes.sigmoid())


def box_sine(logits: torch.Tensor, per: int, temperature: float = 10000.0) -> torch.Tensor:
    """A box's sine encoding ``(B, Q, 4·per)``: each sigmoid coordinate times 2π through
    ``per`` = d/2 frequencies (official ``get_proposal_pos_embed``: 128 at d = 256; HF:
    d/2)."""
    k = torch.arange(per, dtype=logits.dtype, device=logits.device)
    freq = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / per)
    pos = logits.sigmoid()[..., None] * (2 * math.pi) / freq
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), -1).flatten(2)


@register
class DeformableQueries(Block):
    """The decoder's object queries from the encoder's memory: learned queries with
    reference points predicted from their positions (§4.1 "Deformable Transformer
    Decoder"), or, ``two_stage``, the encoder's top-scoring proposals (App. A.4), whose
    class and box heads are the (L+1)-th pair of prediction heads."""

    kind: Literal["deformable_queries"] = "deformable_queries"
    role = "position"
    weight_init = "keep"
    queries: PosInt = 300
    """N, the object queries (and, two-stage, the proposals kept)."""
    two_stage: bool = False
    """Queries from the encoder's proposals instead of learned embeddings."""
    classes: PosInt = 91
    """The proposal class head's classes (two-stage; its first class scores foreground)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        memory = expect_multi_scale(inputs[0], self.kind)
        if self.two_stage and self.queries > memory.length:
            raise ShapeError(
                f"queries {self.queries} but the memory holds {memory.length} proposals",
                field="queries",
                hint=f"queries at most {memory.length}, or a larger input",
            )
        coords = 4 if self.two_stage else 2
        out = QueryState(
            self.queries, memory.dim, coords, len(memory.shapes), False, self.two_stage
        )
        return self, out

    def build(self, *inputs: TensorType) -> nn.Module:
        memory = expect_multi_scale(inputs[0], self.kind)
        if self.two_stage:
            return Proposals(self.queries, memory.dim, self.classes, len(memory.shapes))
        return LearnedQueries(self.queries, memory.dim)


# -- the decoder ---------------------------------------------------------------------------


class DecoderLayer(nn.Module):
    def __init__(self, p: DeformableDecoderLayer, state: QueryState, memory: MultiScale) -> None:
        super().__init__()
        dim, self.coords = state.dim, state.coords
        self.self_attn = PosAttention(dim, p.heads, p.attn_drop)
        self.drop1 = nn.Dropout(p.drop)
        self.norm1 = nn.LayerNorm(dim, eps=p.eps)
        self.cross_attn = DeformAttn(dim, p.heads, len(memory.shapes), p.points, state.coords)
        self.drop2 = nn.Dropout(p.drop)
        self.norm2 = nn.LayerNorm(dim, eps=p.eps)
        self.mlp = FFN(dim, p.ffn, p.act, p.act_drop, p.drop)
        self.norm3 = nn.LayerNorm(dim, eps=p.eps)
        _xavier(self)
        self.bbox_embed = BoxDelta(dim, p.box_bias) if p.refine else None

    def forward(self, state: tuple, memory: tuple) -> tuple:
        t, pos, reference, proposals = state[0], state[1], state[2], state[4]
        value, valid, ratios = memory[0], memory[2], memory[3]
        qk = t + pos
        t = self.norm1(t + self.drop1(self.self_attn(qk, qk, t)))
        scale = ratios if self.coords == 2 else torch.cat((ratios, ratios), -1)
        where = reference[:, :, None] * scale[:, None]  # the reference seen from each level
        t = self.norm2(
            t + self.drop2(self.cross_attn(t + pos, where, value, valid, memory[5], memory[6]))
        )
        t = self.norm3(t + self.mlp(t))
        if self.bbox_embed is None:
            return t, pos, reference, None, proposals
        boxes = refine(self.bbox_embed(t), reference, self.coords)  # detached: the next
        # layer's references
        return t, pos, boxes.detach(), boxes, proposals


@register
class DeformableDecoderLayer(_DeformLayer):
    """Post-norm decoder layer (§4.1 "Deformable Transformer Decoder"): self-attention
    among the queries (q = k = t + pos), deformable cross-attention into the multi-scale
    memory around each query's reference point, FFN. With ``refine`` (App. A.4 "Iterative
    Bounding Box Refinement") the layer owns a box head whose prediction, relative to the
    layer's reference, is the next layer's (detached) reference.
    ``inputs: [queries, memory]``."""

    kind: Literal["deformable_decoder_layer"] = "deformable_decoder_layer"
    arity = 2
    refine: bool = False
    """Iterative box refinement: a box head per layer, refining the references."""
    box_bias: float = 0.0
    """Initial bias of the refining box head's w, h logits (official: −2 on the first
    layer's, one-stage)."""
    attn_drop: DropRate = 0.1
    """Dropout on the self-attention weights (official: the same 0.1; HF:
    attention_dropout, 0)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        state = expect_query_state(inputs[0], f"{self.kind}'s first input (the queries)")
        resolved, memory = self._memory(inputs[1], f"{self.kind}'s second input (the memory)")
        if state.dim != memory.dim:
            raise ShapeError(f"the queries ({state}) are not as wide as the memory ({memory})")
        if not self.refine and state.boxes:
            raise ShapeError(
                "an earlier layer refines the boxes, this one does not",
                field="refine",
                hint="refine: true on every decoder layer, or on none",
            )
        coords = 4 if self.refine else state.coords
        out = QueryState(
            state.queries, state.dim, coords, state.levels, self.refine, state.proposals
        )
        return resolved, out

    def build(self, *inputs: TensorType) -> nn.Module:
        state = expect_query_state(inputs[0], self.kind)
        return DecoderLayer(self, state, expect_multi_scale(inputs[1], self.kind))


class Heads(nn.Module):
    """Class logits (and, without refinement, boxes) of every decoder layer."""

    def __init__(
        self, dim: int, classes: int, layers: int, heads: int, boxes: float | None, last: QueryState
    ):
        super().__init__()
        self.class_embed = nn.ModuleList(class_head(dim, classes) for _ in range(heads))
        self.bbox_embed = None if boxes is None else BoxDelta(dim, boxes)
        self.coords, self.proposals, self.layers = last.coords, last.proposals, layers

    def forward(self, *states: tuple) -> tuple[torch.Tensor, ...]:
        logits, boxes = [], []
        for k in range(self.layers):  # indexed: traced, *states is one proxy
            state = states[k]  # (target, pos, references, boxes, proposals)
            logits.append(self.class_embed[k % len(self.class_embed)](state[0]))
            if self.bbox_embed is None:  # the layer refined: its boxes
                boxes.append(state[3])
            else:
                boxes.append(refine(self.bbox_embed(state[0]), state[2], self.coords))
        if not self.training:
            return logits[-1], boxes[-1]
        out: tuple[torch.Tensor, ...] = (logits[-1], boxes[-1], *map(_earlier, (logits, boxes)))
        if self.proposals:  # two-stage: the encoder's proposal logits and boxes
            out = (*out, states[self.layers - 1][4][0], states[self.layers - 1][4][1])
        return out


def _earlier(per_layer: list[torch.Tensor]) -> torch.Tensor:
    """The layers before the last stacked for the auxiliary losses; a one-layer decoder
    has none: an empty stack (0, B, Q, C), not an error."""
    if len(per_layer) == 1:  # the layer count is fixed at build: traces as one branch
        return per_layer[0].new_zeros((0, *per_layer[0].shape))
    return torch.stack(per_layer[:-1])


@register
class DeformableHead(Block):
    """The prediction heads (§4.1, App. A.2): a linear class head of per-class sigmoid
    logits (focal loss; no "no object" class; bias at the 0.01 prior) and, unless the
    decoder refined its boxes, the 3-layer box MLP added to each query's reference in
    inverse-sigmoid space. Officially one head pair shared by every layer, and one per
    layer with refinement. ``inputs: [decoder.*]``; eval returns ``(logits, boxes)``,
    training adds the earlier layers' stacked ones and, two-stage, the proposals'."""

    kind: Literal["deformable_head"] = "deformable_head"
    role = "head"
    weight_init = "keep"
    arity = None
    objective = "detection"
    classes: PosInt = 91
    """Object classes (COCO: 91 ids), each scored by its own sigmoid."""
    class_heads: Literal["shared", "per_layer"] = "shared"
    """One class head for every decoder layer, or one per layer (the official code with
    refinement; HF ties them into one)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        states = [expect_query_state(t, self.kind) for t in inputs]
        first = states[0]
        for k, s in enumerate(states[1:], 1):
            if (s.queries, s.dim) != (first.queries, first.dim):
                raise ShapeError(f"{self.kind} input {k} ({s}) differs from input 0 ({first})")
        return self, Detections(first.queries, self.classes, len(states), sigmoid=True)

    def build(self, *inputs: TensorType) -> nn.Module:
        last = expect_query_state(inputs[-1], self.kind)
        per_layer = self.class_heads == "per_layer"
        # officially the shared box head starts at w = h = sigmoid(-2), two-stage at 0.5
        boxes = None if last.boxes else -2.0 if last.coords == 2 else 0.0
        heads = len(inputs) if per_layer else 1
        return Heads(last.dim, self.classes, len(inputs), heads, boxes, last)
