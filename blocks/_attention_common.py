"""Shared pieces of the attention kinds: the common parameter vocabulary (``heads``,
``head_dim``, ``qkv_bias``, ``proj_bias``, ``attn_drop``, ``proj_drop``) with its shape
rule, and the scaled-dot-product core (Vaswani et al. 2017 §3.2.1) they compute:
split the projections into heads, ``F.scaled_dot_product_attention``, merge the heads.

Not a block family: it registers no kind. Every attention kind of this project subclasses
``AttentionParams`` so any of them can be swapped into ``encoder_layer`` with one edit;
the kinds whose reference computes plain softmax attention call ``attend`` (one 4-D SDPA
call, which picks the fastest kernel the device has), the ones that edit the map
(talking heads, re-attention, the refiner's) only share the head layout helpers.

qk-norm (Dehghani et al. 2023, ViT-22B §2 "QK normalization"; timm's ``qk_norm``): a
norm over each head's queries and keys before their product, which bounds the logits;
``qk_norms`` builds the pair a kind applies to its heads.

RoPE (Su et al. 2021, "RoFormer" §3.4; 2-D axial as EVA-02, arXiv:2303.11331 §2, and
timm's ``RotaryEmbeddingCat``): each patch token's queries and keys are rotated by
angles proportional to its row (first half of the frequency pairs) and column (second
half), so their product depends on the offset between tokens; prefix tokens are not
rotated. ``Rope`` holds the tables of a kind's fixed grid; it rotates after the qk-norm
and before the KV cache, at each token's absolute position.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError
from torch import nn

from vitgraph.block import Block
from vitgraph.errors import ShapeError
from vitgraph.shapes import TensorType, Tokens, expect_tokens
from vitgraph.vocabulary import DropRate, PosInt, head_width


class AttentionParams(Block):
    """The parameters every attention kind shares (timm's vocabulary)."""

    role = "attention"
    heads: PosInt
    """Number of heads."""
    dim: int | None = None
    """Token width; default: the input's."""
    head_dim: PosInt | None = None
    """Width of each head; default: dim / heads."""
    qkv_bias: bool = True
    """Bias in the query/key/value projections."""
    proj_bias: bool = True
    """Bias in the output projection."""
    attn_drop: DropRate = 0.0
    """Dropout on the attention weights."""
    proj_drop: DropRate = 0.0
    """Dropout after the output projection."""
    causal: bool = False
    """Each token attends to itself and the tokens before it only (autoregressive
    models: iGPT, the Image Transformer); only kinds that compute it accept true."""

    qk_norm: Literal["layernorm", "rmsnorm"] | None = None
    """Norm of each head's queries and keys before their product (ViT-22B §2; timm's
    ``qk_norm``), learned per head channel; null: none. Only kinds that compute it
    accept one."""
    qk_norm_eps: Annotated[float, Field(gt=0)] = 1e-6
    """Epsilon of the qk-norm (timm's ViT: 1e-6)."""
    rope: bool = False
    """Rotary position embedding of the patch tokens' queries and keys, 2-D axial (EVA-02
    §2; timm's ``RotaryEmbeddingCat``); only kinds that compute it accept true."""
    rope_ref_grid: PosInt | None = None
    """RoPE positions scaled so the grid spans this square grid (timm's
    ``ref_feat_shape``: the pre-training grid of a model fine-tuned larger); null: the
    token positions themselves."""
    rope_temperature: Annotated[float, Field(gt=0)] = 10000.0
    """Base of RoPE's frequencies: ``1 / temperature ** (i / bands)``."""

    #: the kind computes causal attention when ``causal`` is true (SDPA's ``is_causal``)
    computes_causal: ClassVar[bool] = False
    #: the kind normalises its queries and keys when ``qk_norm`` is set
    computes_qk_norm: ClassVar[bool] = False
    #: the kind rotates its queries and keys when ``rope`` is true
    computes_rope: ClassVar[bool] = False

    @field_validator("rope")
    @classmethod
    def _rope_only_where_computed(cls, value: bool) -> bool:
        if value and not cls.computes_rope:
            raise PydanticCustomError(
                "rope",
                "{kind} computes no rotary embedding: rope: true needs a kind that does "
                "(mhsa, eva_attention)",
                {"kind": cls.model_fields["kind"].default},
            )
        return value

    @field_validator("qk_norm")
    @classmethod
    def _qk_norm_only_where_computed(cls, value: str | None) -> str | None:
        if value is not None and not cls.computes_qk_norm:
            raise PydanticCustomError(
                "qk_norm",
                "{kind} computes no qk-norm: qk_norm needs a kind that does (mhsa)",
                {"kind": cls.model_fields["kind"].default},
            )
        return value

    @field_validator("causal")
    @classmethod
    def _causal_only_where_computed(cls, value: bool) -> bool:
        if value and not cls.computes_causal:
            raise PydanticCustomError(
                "causal",
                "{kind} computes no causal attention: causal: true needs a kind that does (mhsa)",
                {"kind": cls.model_fields["kind"].default},
            )
        return value

    def resolve(self, tokens: Tokens) -> Self:
        """Fill ``dim`` and ``head_dim`` from the input tokens (heads must divide the width
        unless ``head_dim`` is given)."""
        head_dim = head_width(self.dim, self.heads, self.head_dim, tokens)
        return self.model_copy(update={"dim": tokens.dim, "head_dim": head_dim})

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        tokens = expect_tokens(inputs[0], self.kind)
        resolved = self.resolve(tokens)
        if self.rope:
            check_rope(tokens, resolved.head_dim)
        return resolved, tokens

    def rope_for(self, tokens: TensorType) -> nn.Module:
        """The kind's ``Rope`` for its input tokens (``nn.Identity`` when ``rope`` is off)."""
        if not self.rope:
            return nn.Identity()
        assert isinstance(tokens, Tokens) and tokens.grid is not None and self.head_dim
        ref = (self.rope_ref_grid,) * 2 if self.rope_ref_grid else None
        return Rope(tokens.grid, tokens.prefix, self.head_dim, ref, self.rope_temperature)

    def output_affine(self, module: Any) -> str | None:
        """Every attention kind sharing these params returns its output projection
        ``proj`` (after eval-time dropout): a LayerScale after it folds into ``proj``."""
        return "proj" if isinstance(getattr(module, "proj", None), nn.Linear) else None


def qk_norms(kind: str | None, head_dim: int, eps: float) -> tuple[nn.Module, nn.Module]:
    """The query and key norms of ``qk_norm`` (``nn.Identity`` twice when none), each
    over one head's ``head_dim`` channels, as timm's ``Attention.q_norm``/``k_norm``."""
    if kind is None:
        return nn.Identity(), nn.Identity()
    norm = nn.LayerNorm if kind == "layernorm" else nn.RMSNorm
    return norm(head_dim, eps=eps), norm(head_dim, eps=eps)


def check_rope(tokens: Tokens, head_dim: int | None) -> None:
    """RoPE needs a grid of patch tokens and heads whose width four divides (two axes,
    each a set of (cos, sin) pairs)."""
    if tokens.grid is None:
        raise ShapeError(
            f"rope rotates tokens by their grid position, but receives {tokens} without a grid",
            field="rope",
            hint="use rope on patch tokens, or a learned position table",
        )
    if head_dim is None or head_dim % 4:
        raise ShapeError(
            f"rope needs a head width that 4 divides (two axes of frequency pairs), got {head_dim}",
            field="rope",
            hint="change heads or head_dim so each head's width is a multiple of 4",
        )


def rope_tables(
    grid: tuple[int, int], head_dim: int, ref: tuple[int, int] | None, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(H*W, head_dim) sines and cosines of timm's ``RotaryEmbeddingCat`` (in_pixels
    False): ``head_dim / 4`` frequencies ``1 / T ** (i / bands)``, angles row * f for the
    first half and column * f for the second, each repeated for its pair of channels."""
    bands = head_dim // 4
    freqs = 1.0 / temperature ** (torch.arange(bands, dtype=torch.float32) / bands)
    axes = [torch.arange(side, dtype=torch.float32) for side in grid]
    if ref is not None:  # EVA's fine-tuning rule: positions on the pre-training grid
        axes = [t / side * r for t, side, r in zip(axes, grid, ref, strict=True)]
    positions = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (H, W, 2)
    angles = (positions[..., None] * freqs).flatten(-2).flatten(0, -2)  # (H*W, head_dim / 2)
    angles = angles.repeat_interleave(2, dim=-1)  # interleaved pairs: (x0, x1) share one
    return angles.sin(), angles.cos()


class Rope(nn.Module):
    """Rotates ``(B, heads, N, d)`` queries or keys (a chunk from ``start`` when decoding):
    prefix rows have sine 0 and cosine 1 (no rotation), patch rows timm's tables."""

    sin: torch.Tensor  # buffers (register_buffer below)
    cos: torch.Tensor

    def __init__(
        self,
        grid: tuple[int, int],
        prefix: int,
        head_dim: int,
        ref: tuple[int, int] | None,
        temperature: float,
    ) -> None:
        super().__init__()
        sin, cos = rope_tables(grid, head_dim, ref, temperature)
        sin = torch.cat([torch.zeros(prefix, head_dim), sin])
        cos = torch.cat([torch.ones(prefix, head_dim), cos])
        # tables of the fixed grid: rebuilt with the module, never saved
        self.register_buffer("sin", sin, persistent=False)
        self.register_buffer("cos", cos, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A whole sequence: every row of the tables."""
        return self._rotate(x, self.sin, self.cos)

    def chunk(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Decoding: a chunk's rows, after the ``start`` positions already cached."""
        end = start + x.shape[-2]
        return self._rotate(x, self.sin[start:end], self.cos[start:end])

    @staticmethod
    def _rotate(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        # the pair (x0, x1) -> (-x1, x0): a quarter turn of each channel pair
        turned = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).flatten(-2)
        return (x * cos + turned * sin).to(x.dtype)


# -- the core: the same views and reshapes every kind wrote out, one SDPA call ------------


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``'b n (h d) -> b h n d'``: one projection's output as heads (a view)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def split_fused(x: torch.Tensor, parts: int, heads: int) -> tuple[torch.Tensor, ...]:
    """``'b n (p h d) -> p b h n d'``: a fused projection (qkv: 3 parts, kv: 2) as
    ``parts`` tensors of heads (views)."""
    return x.unflatten(-1, (parts, heads, -1)).permute(2, 0, 3, 1, 4).unbind(0)


def merge_heads(x: torch.Tensor, copy: bool = False) -> torch.Tensor:
    """``'b h n d -> b n (h d)'``: the heads side by side again, for the output
    projection (a view where SDPA's output is laid out heads-inner, else one copy).

    ``copy``: always an explicit copy, for the output of SDPA with an additive mask: ONNX
    export re-traces masked SDPA (with a symbolic batch) into a layout where the
    transposed output is not viewable, and ``contiguous()`` is elided there on stale
    strides; a clone keeps the flatten valid in every trace."""
    x = x.transpose(1, 2)
    if copy:
        x = x.clone(memory_format=torch.contiguous_format)
    return x.flatten(2)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    drop: float = 0.0,
    training: bool = False,
    scale: float | None = None,
    causal: bool = False,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``softmax(q kᵀ · scale) v`` over ``(B, heads, N, d)`` heads, 4-D (the ONNX exporter
    translates only 4-D SDPA: fold windows or groups into the batch); dropout ``drop`` on
    the weights in training only. ``scale``: default ``d ** -0.5``. ``causal``: query i
    attends to keys 0..i only (the upper triangle masked; Vaswani et al. 2017 §3.2.3).
    ``mask``: a boolean ``(B, 1, 1, N)`` map of the keys that take part (True; DETR's
    padded pixels are False)."""
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=drop if training else 0.0, scale=scale, is_causal=causal
    )
