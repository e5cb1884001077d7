"""LeViT's blocks (Graham et al., arXiv:2104.01136): a conv stem, attention with a learned
per-head bias indexed by relative offsets (§4.2 "attention bias"), shrinking attention
between stages (§4.2 "shrinking attention"), Linear+BatchNorm everywhere (§4.2 "normalization
layers") and BatchNorm+Linear heads whose class and distillation logits are averaged at eval.

Every linear map is followed by a BatchNorm (so it can be fused at inference); the
attention output goes through Hardswish before its projection (§4.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self

import torch
from pydantic import Field
from torch import fx, nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from vitgraph.block import LINEAR_CLASSIFIER, Block, Classifier, Fold, ScaleFold
from vitgraph.blocks.heads import DistilledPassThrough
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.resample import ResampleError, resize_offset_table
from vitgraph.shapes import (
    TensorType,
    Tokens,
    Vector,
    conv_out,
    expect_grid,
    expect_image,
    expect_tokens,
    expect_vector,
)
from vitgraph.vocabulary import Activation, DropRate, PosInt, activation, scaled_width


class LinearBN(nn.Module):
    """Linear (no bias) then BatchNorm1d over every token (keys ``linear``, ``bn``)."""

    def __init__(self, dim: int, out: int, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, out, bias=False)
        self.bn = nn.BatchNorm1d(out)
        nn.init.constant_(self.bn.weight, bn_weight_init)  # 0 on residual outputs (§4.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        return self.bn(x.flatten(0, -2)).reshape_as(x)  # statistics over (batch, tokens)


class ConvBN(nn.Module):
    """Conv2d (no bias) then BatchNorm2d (keys ``linear``, ``bn`` as in the official code)."""

    def __init__(self, channels: int, out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.linear = nn.Conv2d(channels, out, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(x))


def wrapped_folds(module: nn.Module) -> list[Fold]:
    """Each ``LinearBN`` / ``ConvBN`` of ``module`` becomes its map with the BatchNorm
    folded in (§4.2: the BatchNorms "can be fused with the preceding linear layer at
    inference"); a ``NormLinear`` head's BatchNorm folds into its Linear."""
    folds = []
    for path, sub in module.named_modules():
        inner = f"{path}." if path else ""
        if isinstance(sub, LinearBN | ConvBN) and isinstance(
            sub.bn, nn.BatchNorm1d | nn.BatchNorm2d
        ):
            folds.append(Fold(f"{inner}bn", f"{inner}linear", replace=path))
        elif isinstance(sub, NormLinear) and isinstance(sub.bn, nn.BatchNorm1d):
            plain = type(sub) is NormLinear  # the distillation head keeps its two inputs
            folds.append(
                Fold(f"{inner}bn", f"{inner}linear", before=True, replace=path if plain else None)
            )
    return folds


# ---------------------------------------------------------------------------- stem


@register
class LevitStem(Block):
    """Stride-2 3×3 Conv+BN layers with an activation between them (§4.2 "patch
    embedding": four layers, 3→dim/8→dim/4→dim/2→dim, so a 16× smaller grid)."""

    kind: Literal["levit_stem"] = "levit_stem"
    role = "tokenizer"
    weight_init = "keep"  # timm LeViT keeps its constructors' init
    dim: PosInt
    """Width of the last conv (the token width)."""
    convs: Annotated[int, Field(ge=1, le=6)] = 4
    """Number of stride-2 convs (4: stride 16; timm's ``s8`` stem has 3)."""
    act: Activation = "hardswish"
    """Activation between the convs (none after the last)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        if self.dim % 2 ** (self.convs - 1):
            raise ShapeError(
                f"dim {self.dim} must be divisible by {2 ** (self.convs - 1)} "
                f"(each of the {self.convs} convs halves the width going back)",
                field="dim",
            )
        rows, cols = image.height, image.width
        for _ in range(self.convs):
            rows, cols = conv_out(rows, 3, 2, 1), conv_out(cols, 3, 2, 1)
        return self, Tokens(self.dim, (rows, cols))

    def build(self, *inputs: TensorType) -> nn.Module:
        image = expect_image(inputs[0], self.kind)
        return Stem(image.channels, self.dim, self.convs, self.act)

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        return wrapped_folds(module)


class Stem(nn.Module):
    def __init__(self, channels: int, dim: int, convs: int, act: str) -> None:
        super().__init__()
        widths = [channels] + [dim // 2 ** (convs - 1 - i) for i in range(convs)]
        for i in range(convs):
            if i:
                self.add_module(f"act{i}", activation(act, inplace=True))  # on a BatchNorm output
            self.add_module(f"conv{i + 1}", ConvBN(widths[i], widths[i + 1], 3, 2, 1))
        self.convs = convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x.flatten(2).transpose(1, 2)  # (B, rows*cols, dim)


# ---------------------------------------------------------------------------- attention


def bias_index(grid: tuple[int, int], table: tuple[int, int], stride: int) -> torch.Tensor:
    """(queries, keys) index into a per-head table of ``table`` rows×cols entries: the
    query at (i·stride, j·stride) and the key at (y, x) read entry (|Δy|, |Δx|)."""
    rows, cols = grid
    ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    keys = torch.stack([ys.flatten(), xs.flatten()])  # (2, N_k)
    qy, qx = torch.meshgrid(
        torch.arange(0, rows, stride), torch.arange(0, cols, stride), indexing="ij"
    )
    queries = torch.stack([qy.flatten(), qx.flatten()])  # (2, N_q)
    offset = (queries[:, :, None] - keys[:, None, :]).abs()
    return offset[0] * table[1] + offset[1]


class _BiasedAttention(Block):
    role = "attention"
    weight_init = "keep"  # timm LeViT: Linear default, attention_biases 0
    no_weight_decay = frozenset({"attention_biases"})  # as timm's LeViT
    precompute = True  # the biases gathered by offset depend on the table alone
    heads: PosInt
    """Number of heads."""
    key_dim: PosInt
    """Width of each head's queries and keys (LeViT's D: 16 or 32)."""
    attn_ratio: Annotated[float, Field(gt=0)] = 2.0
    """Value width per head as a multiple of ``key_dim`` (2 in blocks, 4 when shrinking)."""
    act: Activation = "hardswish"
    """Activation on the attention output, before the projection."""
    table: tuple[PosInt, PosInt] | None = None
    """rows×cols of the bias table (the offsets it covers); default: the input grid."""

    def _grid_and_table(self, tokens: Tokens) -> tuple[tuple[int, int], tuple[int, int]]:
        grid = expect_grid(tokens, self.kind)
        scaled_width(self.key_dim, self.attn_ratio, "attn_ratio", "value")  # value_dim >= 1
        if tokens.prefix:
            raise ShapeError(
                f"{self.kind} has no bias for the {tokens.prefix} prefix token(s) of {tokens}",
                hint="LeViT has no class token; pool the patches",
            )
        table = self.table or grid
        if table[0] < grid[0] or table[1] < grid[1]:
            raise ShapeError(
                f"relative-bias table {table[0]}x{table[1]} is smaller than the "
                f"{grid[0]}x{grid[1]} grid it receives (offsets up to "
                f"{grid[0] - 1}x{grid[1] - 1} need a {grid[0]}x{grid[1]} table)",
                field="table",
                hint="omit table to size it from the grid",
            )
        return grid, table

    @property
    def value_dim(self) -> int:
        return int(self.attn_ratio * self.key_dim)

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        return wrapped_folds(module)

    def constant_scales(self, module: Any) -> list[ScaleFold]:
        """1/sqrt(key_dim) into the query rows, once their BatchNorm is folded (a scale
        before a BatchNorm would be normalised away)."""
        if module.subsample and isinstance(module.q.ln, nn.Linear):
            return [ScaleFold("scale", "q.ln", ((0, module.q.ln.out_features),))]
        if not module.subsample and isinstance(module.qkv, nn.Linear):
            per = module.qkv.out_features // module.heads  # q, k, v of each head in turn
            rows = tuple((h * per, h * per + module.key_dim) for h in range(module.heads))
            return [ScaleFold("scale", "qkv", rows)]
        return []

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
        """The attention biases of another resolution, resized bicubically on the offset
        grid as timm's ``resize_rel_pos_bias_table_levit``."""
        if self.table is None or table.ndim != 2:
            return None
        try:
            out = resize_offset_table(table, (self.table[0], self.table[1]), antialias)
        except ResampleError:
            return None
        return out if tuple(out.shape) == target else None


@register
class LevitAttention(_BiasedAttention):
    """Self-attention with a learned bias per head and relative offset (|Δy|, |Δx|),
    Hardswish on its output, every projection a Linear+BN (§4.2)."""

    kind: Literal["levit_attention"] = "levit_attention"

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        _, table = self._grid_and_table(tokens)
        return self.model_copy(update={"table": table}), tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        assert tokens.grid is not None and self.table is not None
        return BiasedAttention(
            tokens.dim,
            tokens.dim,
            self.heads,
            self.key_dim,
            self.value_dim,
            self.act,
            tokens.grid,
            self.table,
            1,
        )


@register
class LevitSubsampleAttention(_BiasedAttention):
    """Shrinking attention (§4.2): queries from every ``stride``-th position, keys and
    values from all, so the grid shrinks and the width changes to ``dim``; no residual."""

    kind: Literal["levit_subsample_attention"] = "levit_subsample_attention"
    dim: PosInt
    """Output token width."""
    stride: PosInt = 2
    """Step between query positions."""
    attn_ratio: Annotated[float, Field(gt=0)] = 4.0
    """Value width per head as a multiple of ``key_dim`` (LeViT: 4 when shrinking)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        grid, table = self._grid_and_table(tokens)
        out = (-(-grid[0] // self.stride), -(-grid[1] // self.stride))
        return self.model_copy(update={"table": table}), Tokens(self.dim, out)

    def build(self, *inputs: TensorType) -> nn.Module:
        tokens = expect_tokens(inputs[0], self.kind)
        assert tokens.grid is not None and self.table is not None
        return BiasedAttention(
            tokens.dim,
            self.dim,
            self.heads,
            self.key_dim,
            self.value_dim,
            self.act,
            tokens.grid,
            self.table,
            self.stride,
        )


class Subsample(nn.Module):
    """Every ``stride``-th token of the grid in both directions."""

    def __init__(self, grid: tuple[int, int], stride: int) -> None:
        super().__init__()
        self.grid, self.stride = grid, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        x = x.unflatten(1, self.grid)[:, ::s, ::s]  # (B, rows/s, cols/s, D)
        return x.flatten(1, 2)


class BiasedAttention(nn.Module):
    attention_bias_idxs: torch.Tensor  # a buffer (register_buffer below)

    """Both LeViT attentions. ``stride`` 1: fused ``qkv``; otherwise ``kv`` from all tokens
    and ``q`` (subsample, Linear+BN) from the strided grid (timm's names)."""

    def __init__(
        self,
        dim: int,
        out: int,
        heads: int,
        key_dim: int,
        value_dim: int,
        act: str,
        grid: tuple[int, int],
        table: tuple[int, int],
        stride: int,
    ) -> None:
        super().__init__()
        self.heads, self.key_dim, self.value_dim = heads, key_dim, value_dim
        self.scale = key_dim**-0.5
        self.subsample = stride > 1
        per_head = (2 * key_dim + value_dim) if not self.subsample else (key_dim + value_dim)
        if self.subsample:
            self.kv = LinearBN(dim, heads * per_head)
            self.q = nn.Sequential()
            self.q.add_module("down", Subsample(grid, stride))
            self.q.add_module("ln", LinearBN(dim, heads * key_dim))
        else:
            self.qkv = LinearBN(dim, heads * per_head)
        self.proj = nn.Sequential()
        self.proj.add_module("act", activation(act, inplace=True))  # on a fresh copy
        # zero-init BN on the residual branch's output (official code); not when shrinking
        self.proj.add_module("ln", LinearBN(heads * value_dim, out, 1.0 if stride > 1 else 0.0))
        self.attention_biases = nn.Parameter(torch.zeros(heads, table[0] * table[1]))
        self.register_buffer(
            "attention_bias_idxs", bias_index(grid, table, stride), persistent=False
        )
        # eval only, keyed by the table's version so an in-place load invalidates it
        self._cached_bias: tuple[int, torch.Tensor] | None = None

    def train(self, mode: bool = True) -> BiasedAttention:
        self._cached_bias = None
        return super().train(mode)

    def _apply(self, fn, recurse=True):
        self._cached_bias = None  # .to() / .half() move the table
        return super()._apply(fn, recurse)

    def biases(self) -> torch.Tensor:
        """(heads, N_q, N_k) bias of each head; gathered once per eval session, like the
        official code's ``ab`` cache, but never while tracing or training."""
        if self.training or torch.compiler.is_compiling() or is_fx_symbolic_tracing():
            return self.attention_biases[:, self.attention_bias_idxs]
        version = self.attention_biases._version
        if self._cached_bias is None or self._cached_bias[0] != version:
            with torch.no_grad():
                gathered = self.attention_biases[:, self.attention_bias_idxs]
            self._cached_bias = (version, gathered)
        return self._cached_bias[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.subsample:
            kv = self.kv(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, H, N, k+v)
            k, v = kv.split([self.key_dim, self.value_dim], dim=-1)
            q = self.q(x).unflatten(-1, (self.heads, self.key_dim)).transpose(1, 2)
        else:
            qkv = self.qkv(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)
            q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], dim=-1)
        # explicit softmax: with a float mask, SDPA's CPU path spends more checking the
        # mask than these small heads (D = 16 or 32) spend multiplying
        attn = q @ k.transpose(-2, -1)  # (B, H, N_q, N_k)
        if self.scale != 1.0:  # 1 once vitgraph.optimize folded it into the query rows
            attn = attn.mul_(self.scale)
        attn = attn.add_(self.biases())  # in place: no second N_q x N_k map per head
        x = attn.softmax(dim=-1) @ v  # (B, H, N_q, value_dim)
        return self.proj(x.transpose(1, 2).flatten(2))


# ---------------------------------------------------------------------------- mlp and heads


@register
class LevitMlpBlock(Block):
    """Linear+BN → activation → Linear+BN (§4.2: expansion 2, no dropout by default)."""

    kind: Literal["levit_mlp"] = "levit_mlp"
    role = "mlp"
    weight_init = "keep"  # timm LeViT: Linear default, residual BN 0 (drawn by build)
    ratio: Annotated[float, Field(gt=0)] = 2.0
    """Hidden width as a multiple of the input width."""
    act: Activation = "hardswish"
    """Activation between the layers."""
    drop: DropRate = 0.0
    """Dropout after the activation."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        scaled_width(tokens.dim, self.ratio)
        return self, tokens

    def build(self, *inputs: TensorType) -> nn.Module:
        dim = expect_tokens(inputs[0], self.kind).dim
        return LevitMlp(dim, int(dim * self.ratio), self.act, self.drop)

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        return wrapped_folds(module)


class LevitMlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str, drop: float) -> None:
        super().__init__()
        self.ln1 = LinearBN(dim, hidden)
        self.act = activation(act, inplace=True)  # on the BatchNorm output
        self.drop = nn.Dropout(drop) if drop else nn.Identity()
        self.ln2 = LinearBN(hidden, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln2(self.drop(self.act(self.ln1(x))))


class NormLinear(nn.Module):
    """BatchNorm1d → dropout → Linear (keys ``bn``, ``linear``)."""

    def __init__(self, dim: int, classes: int, drop: float) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.drop = nn.Dropout(drop) if drop else nn.Identity()
        self.linear = nn.Linear(dim, classes)
        nn.init.trunc_normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.drop(self.bn(x)))


@register
class BnLinearHead(Block):
    """A BatchNorm + Linear classifier on a pooled vector (LeViT §4.2)."""

    kind: Literal["bn_linear_head"] = "bn_linear_head"
    role = "head"
    classifier = LINEAR_CLASSIFIER
    weight_init = "keep"  # timm LeViT NormLinear: TN(0.02), drawn by build
    classes: PosInt
    """Number of classes."""
    drop: DropRate = 0.0
    """Dropout between the BatchNorm and the Linear."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        expect_vector(inputs[0], self.kind)
        return self, Vector(self.classes)

    def build(self, *inputs: TensorType) -> nn.Module:
        return NormLinear(expect_vector(inputs[0], self.kind).dim, self.classes, self.drop)

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        return wrapped_folds(module)


def reset_bn_distillation(
    block: Block, inputs: Sequence[TensorType], classes: int, old: nn.Module
) -> nn.Module:
    """LeViT's second head: with 0 classes both heads pass the pooled vector through, so
    timm's ``(x + x_dist) / 2`` is the pooled vector itself."""
    made: Any = (  # a module with a distilled_training switch
        DistilledPassThrough(None) if classes == 0 else block.build(Vector(classes), inputs[1])
    )
    made.distilled_training = bool(getattr(old, "distilled_training", True))
    return made


def _pooled_vector(block: Block, args: Sequence[fx.Node], graph: fx.Graph) -> fx.Node:
    return args[1]


@register
class BnDistillHead(Block):
    """LeViT's distillation head: a second BatchNorm + Linear on the same pooled vector.
    Inputs: the class head's logits and the pooled vector. Eval returns the mean of both
    heads; training returns ``(class_logits, distillation_logits)`` unless
    ``set_distilled_training(False)``."""

    kind: Literal["bn_distill_head"] = "bn_distill_head"
    role = "head"
    objective = "distillation"  # training returns (class logits, distillation logits)
    classifier = Classifier(reset_bn_distillation, _pooled_vector, features_input=1)
    weight_init = "keep"  # timm LeViT NormLinear: TN(0.02), drawn by build
    arity = 2
    drop: DropRate = 0.0
    """Dropout between the BatchNorm and the Linear."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        logits = expect_vector(inputs[0], self.kind + " (first input: the class logits)")
        expect_vector(inputs[1], self.kind + " (second input: the pooled vector)")
        return self, logits

    def build(self, *inputs: TensorType) -> nn.Module:
        logits = expect_vector(inputs[0], self.kind)
        pooled = expect_vector(inputs[1], self.kind)
        return DistilledNormLinear(pooled.dim, logits.dim, self.drop)

    def batchnorm_folds(self, module: Any) -> list[Fold]:
        return wrapped_folds(module)


class DistilledNormLinear(NormLinear):
    def __init__(self, dim: int, classes: int, drop: float) -> None:
        super().__init__(dim, classes, drop)
        self.distilled_training = True

    def forward(self, logits: torch.Tensor, pooled: torch.Tensor):  # type: ignore[override]
        dist = super().forward(pooled)
        if self.training and self.distilled_training:
            return logits, dist
        return (logits + dist) / 2
