"""BoTNet's blocks (Srinivas et al., arXiv:2101.11605): a ResNet stem, ResNet bottlenecks,
and the bottleneck-transformer block whose 3×3 conv is replaced by multi-head self-attention
with 2-D relative position logits (§3, Fig. 4: q·r_h + q·r_w added to q·k); since MHSA
cannot stride, a 2×2 average pool follows it in a strided block (§4.2). BoTNet-S1 (§4.7,
Appendix) adds squeeze-and-excitation to every block (``se``).

Kinds are prefixed ``bot_`` (module names follow timm's ``byobnet``: ``conv1_1x1``,
``conv2_kxk``, ``self_attn``, ``post_attn``, ``conv3_1x1``, ``shortcut``); the global
average pool at the end is the shared ``global_avg_pool`` (pooling.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vitgraph.block import Block, Fold
from vitgraph.blocks.squeeze_excite import SqueezeExcite, se_width
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.resample import resize_offset_rows
from vitgraph.shapes import Image, TensorType, conv_out, expect_image
from vitgraph.vocabulary import Activation, PosInt, activation, per_head, scaled_width


class ConvNormAct(nn.Sequential):
    """Conv (no bias) → BatchNorm → activation (keys ``conv``, ``bn``)."""

    def __init__(
        self, channels: int, out: int, kernel: int, stride: int, act: str | None, groups: int = 1
    ) -> None:
        super().__init__()
        self.add_module(
            "conv", nn.Conv2d(channels, out, kernel, stride, kernel // 2, groups=groups, bias=False)
        )
        self.add_module("bn", nn.BatchNorm2d(out))
        if act is not None:  # in place on the BatchNorm's output, as timm's BatchNormAct2d
            self.add_module("act", activation(act, inplace=True))


def conv_norm_folds(module: nn.Module) -> list[Fold]:
    """Each ``ConvNormAct``'s BatchNorm folds into its conv."""
    return [
        Fold(f"{path}.bn", f"{path}.conv")
        for path, sub in module.named_modules()
        if isinstance(sub, ConvNormAct) and "bn" in sub._modules
    ]


@register
class BotStem(Block):
    """ResNet stem: Conv+BN+act layers (the first with stride 2), then an optional 3×3
    stride-2 max-pool. ResNet-50: one 7×7 conv of 64; timm's ``tiered`` stem: 3×3 convs
    of 24, 32, 64."""

    kind: Literal["bot_stem"] = "bot_stem"
    role = "tokenizer"
    weight_init = "bn_zero_last"  # timm byobnet._init_weights
    channels: Annotated[list[PosInt], Field(min_length=1)]
    """Width of each conv."""
    kernel: PosInt = 3
    """Kernel side of every conv (padding kernel // 2)."""
    act: Activation = "relu"
    """Activation after each conv."""
    pool: bool = True
    """3×3 stride-2 max-pool at the end."""
    strides: list[Literal[1, 2]] | None = None
    """Stride of each conv; default 2 for the first, 1 for the others (timm's stride-4
    stems without a pool stride their last conv too: ``[2, 1, 2]``)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        strides = self._strides()
        if len(strides) != len(self.channels):
            raise ShapeError(
                f"{len(strides)} strides for {len(self.channels)} convs", field="strides"
            )
        rows, cols = image.height, image.width
        for stride in strides:
            rows, cols = (conv_out(s, self.kernel, stride, self.kernel // 2) for s in (rows, cols))
        if self.pool:
            rows, cols = conv_out(rows, 3, 2, 1), conv_out(cols, 3, 2, 1)
        return self, Image(self.channels[-1], rows, cols)

    def _strides(self) -> list[int]:
        if self.strides is not None:
            return list(self.strides)
        return [2] + [1] * (len(self.channels) - 1)

    def build(self, *inputs: TensorType) -> nn.Module:
        image = expect_image(inputs[0], self.kind)
        stem = nn.Sequential()
        widths = [image.channels, *self.channels]
        for i, stride in enumerate(self._strides()):
            stem.add_module(
                f"conv{i + 1}",
                ConvNormAct(widths[i], widths[i + 1], self.kernel, stride, self.act),
            )
        if self.pool:
            stem.add_module("pool", nn.MaxPool2d(3, 2, 1))
        return stem

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        return conv_norm_folds(module)


@register
class BotBottleneck(Block):
    """A ResNet bottleneck (1×1 → 3×3 → 1×1, residual, act), or with ``attention`` the
    BoT block: the 3×3 conv becomes MHSA with 2-D relative position logits over the whole
    feature map, followed by BN + act (and a 2×2 average pool when ``stride`` is 2)."""

    kind: Literal["bot_bottleneck"] = "bot_bottleneck"
    role = "block"
    weight_init = "bn_zero_last"  # timm byobnet._init_weights, zero_init_last
    out: PosInt
    """Output channels."""
    stride: Literal[1, 2] = 1
    """Stride of the block (on the 3×3 conv, or a pool after the attention)."""
    ratio: Annotated[float, Field(gt=0, le=1)] = 0.25
    """Bottleneck width as a fraction of ``out``."""
    act: Activation = "relu"
    """Activation."""
    attention: bool = False
    """MHSA in place of the 3×3 conv (a BoT block)."""
    heads: PosInt = 4
    """Heads of that attention (the paper uses 4)."""
    qkv_bias: bool = False
    """Bias in the 1×1 qkv projection."""
    se: Annotated[float, Field(ge=0, le=1)] = 0
    """Squeeze-and-excitation ratio, hidden width ``out * se`` (SE-Net: 1/16); 0: none.
    The gate acts on the block's output before the residual sum (SE-ResNet placement)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        mid = scaled_width(self.out, self.ratio, what="bottleneck")
        if self.attention:
            per_head(mid, self.heads, "the bottleneck width")
        if self.attention and self.stride == 2 and (image.height % 2 or image.width % 2):
            raise ShapeError(
                f"the 2x2 average pool after the attention needs an even map, "
                f"but receives {image.height}x{image.width}",
                field="stride",
                hint="use an input size whose map here is even, or stride 1",
            )
        rows, cols = (conv_out(s, 3, self.stride, 1) for s in (image.height, image.width))
        return self, Image(self.out, rows, cols)

    def build(self, *inputs: TensorType) -> nn.Module:
        image = expect_image(inputs[0], self.kind)
        mid = int(self.out * self.ratio)
        return Bottleneck(
            image.channels,
            mid,
            self.out,
            self.stride,
            self.act,
            (image.height, image.width) if self.attention else None,
            self.heads,
            self.qkv_bias,
            se_width(self.out, self.se) if self.se else 0,
        )

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        """Each conv's BatchNorm into the conv; the BatchNorm after the attention into the
        value rows of its qkv projection: softmax weights sum to 1 and the 2×2 average
        pool averages, so a per-channel ``a·x + b`` of the output is the same map of v."""
        folds = conv_norm_folds(module)
        if isinstance(getattr(module, "post_attn", None), nn.BatchNorm2d):
            width = module.self_attn.qkv.out_channels // 3
            folds.append(Fold("post_attn", "self_attn.qkv", rows=(2 * width, 3 * width)))
        return folds

    def resample(
        self,
        inputs: Sequence[TensorType],
        name: str,
        table: torch.Tensor,
        target: tuple[int, ...],
        *,
        antialias: bool = True,
        was: Sequence[TensorType] | None = None,
    ) -> torch.Tensor | None:
        """The relative tables ``height_rel`` / ``width_rel`` of another feature-map side,
        resized linearly along the offsets (``vitgraph.resample.resize_offset_rows``)."""
        if table.ndim != 2 or len(target) != 2 or table.shape[1] != target[1] or target[0] % 2 == 0:
            return None
        return resize_offset_rows(table, target[0])


class Bottleneck(nn.Module):
    def __init__(
        self,
        channels: int,
        mid: int,
        out: int,
        stride: int,
        act: str,
        attention_map: tuple[int, int] | None,
        heads: int,
        qkv_bias: bool,
        se_hidden: int = 0,
    ) -> None:
        super().__init__()
        needs_projection = channels != out or stride != 1
        self.shortcut = (
            ConvNormAct(channels, out, 1, stride, None) if needs_projection else (nn.Identity())
        )
        self.conv1_1x1 = ConvNormAct(channels, mid, 1, 1, act)
        if attention_map is None:
            self.conv2_kxk = ConvNormAct(mid, mid, 3, stride, act)
        else:
            self.self_attn = RelPosSelfAttention(mid, heads, attention_map, stride, qkv_bias)
            self.post_attn = nn.BatchNorm2d(mid)
            self.post_act = activation(act, inplace=True)
        self.conv3_1x1 = ConvNormAct(mid, out, 1, 1, None)
        # timm's name for a channel attention after the last conv
        self.attn_last = SqueezeExcite(out, se_hidden, act) if se_hidden else nn.Identity()
        # in place on the residual sum; training keeps one map fewer per activation
        # (timm's ReLU(inplace=True): BoTNet26t's train-step peak was 1.093x timm's without)
        self.act = activation(act, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        x = self.conv1_1x1(x)
        if hasattr(self, "conv2_kxk"):
            x = self.conv2_kxk(x)
        else:
            x = self.post_act(self.post_attn(self.self_attn(x)))
        return self.act(self.attn_last(self.conv3_1x1(x)) + shortcut)


def _relative_index(rows: int, cols: int, axis: int) -> torch.Tensor:
    """(HW, n): for the query at flat position i of an H×W map and each key position p
    along ``axis`` (0: rows, n = H; 1: columns, n = W), the row of that axis's (2n − 1)
    table holding their offset, p − (the query's position on the axis) + n − 1."""
    ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    pos, size = (ys, rows) if axis == 0 else (xs, cols)
    return torch.arange(size)[None, :] - pos.flatten()[:, None] + size - 1


class RelativeTables(nn.Module):
    """The two 1-D relative tables at timm's keys (``pos_embed.height_rel`` / ``width_rel``)."""

    def __init__(self, size: tuple[int, int], head_dim: int, scale: float) -> None:
        super().__init__()
        self.height_rel = nn.Parameter(torch.randn(2 * size[0] - 1, head_dim) * scale)
        self.width_rel = nn.Parameter(torch.randn(2 * size[1] - 1, head_dim) * scale)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.height_rel, self.width_rel


class RelPosSelfAttention(nn.Module):
    query_index: torch.Tensor  # buffers (register_buffer below)
    height_index: torch.Tensor
    width_index: torch.Tensor

    """MHSA over an H×W map with logits q·k + q·r_h + q·r_w (§3, Fig. 4; the 1-D relative
    tables ``height_rel`` (2H−1, d) and ``width_rel`` (2W−1, d) are shared by the heads)."""

    def __init__(
        self, dim: int, heads: int, size: tuple[int, int], stride: int, qkv_bias: bool
    ) -> None:
        super().__init__()
        self.heads, self.size = heads, size
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=qkv_bias)
        self.pos_embed = RelativeTables(size, self.head_dim, self.scale)
        # small (HW, n) indices read by advanced indexing, whose backward keeps only them:
        # a gather over (HW, HW) indices kept its whole input for the backward (4 MiB more
        # than timm in a BoTNet26t training step) and 2 MiB of index buffers
        self.register_buffer(
            "query_index", torch.arange(size[0] * size[1])[:, None], persistent=False
        )
        self.register_buffer("height_index", _relative_index(*size, 0), persistent=False)
        self.register_buffer("width_index", _relative_index(*size, 1), persistent=False)
        self.pool = nn.AvgPool2d(2, 2) if stride == 2 else nn.Identity()

    def relative_logits(self, q: torch.Tensor) -> torch.Tensor:
        """(B, heads, HW, HW) logits q_i·r_h[y_j − y_i] + q_i·r_w[x_j − x_i]."""
        by_row = q @ self.pos_embed.height_rel.t()  # (B, heads, HW, 2H-1)
        by_col = q @ self.pos_embed.width_rel.t()  # (B, heads, HW, 2W-1)
        height = by_row[:, :, self.query_index, self.height_index]  # (B, heads, HW, H)
        width = by_col[:, :, self.query_index, self.width_index]  # (B, heads, HW, W)
        # key (y, x) at flat position y·W + x: the row's logit plus the column's
        return (height[..., :, None] + width[..., None, :]).flatten(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x).flatten(2).unflatten(1, (3, self.heads, self.head_dim))
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, d)
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=self.relative_logits(q), scale=self.scale
        )  # (B, heads, HW, d)
        x = x.transpose(-1, -2).flatten(1, 2).unflatten(2, self.size)  # (B, C, H, W)
        return self.pool(x)
