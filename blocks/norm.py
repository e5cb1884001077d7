"""Normalisation layers over the token width: LayerNorm (Ba et al. 2016) and RMSNorm
(Zhang & Sennrich 2019)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, Vector


@register
class LayerNormBlock(Block):
    """LayerNorm over the last dim of tokens or a vector."""

    kind: Literal["layernorm"] = "layernorm"
    role = "norm"
    weight_init = "keep"  # 1 and 0 (PyTorch's default) in every reference
    eps: Annotated[float, Field(gt=0)] = 1e-5
    """Added to the variance (ViT and DeiT use 1e-6; torch's default is 1e-5)."""
    affine: bool = True
    """Learned scale and shift."""
    zero_init: bool = False
    """Scale and shift start at 0: a residual branch ending in this norm starts switched
    off (Swin v2's res-post-norm, timm's ``_init_respostnorm``)."""
    scale_init: Annotated[float, Field(gt=0)] | None = None
    """Scale starts at this value, shift at 0 (timm's ``ResPostRelPosBlock``: its
    ``init_values``); null: 1."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = inputs[0]
        if not isinstance(x, Tokens | Vector):
            raise ShapeError(
                f"layernorm normalises tokens or a vector, but receives {x}",
                hint="normalise a feature map after flattening it to tokens",
            )
        return self, x

    def build(self, *inputs: TensorType) -> nn.Module:
        x = inputs[0]
        assert isinstance(x, Tokens | Vector)
        norm = nn.LayerNorm(x.dim, eps=self.eps, elementwise_affine=self.affine)
        if self.zero_init and self.affine:
            nn.init.zeros_(norm.weight)
            nn.init.zeros_(norm.bias)
        elif self.scale_init is not None and self.affine:
            nn.init.constant_(norm.weight, self.scale_init)
        return norm


@register
class RMSNormBlock(Block):
    """RMSNorm over the last dim (Zhang & Sennrich 2019): ``x / rms(x) * weight``, no mean
    subtracted and no bias (iGPT's norm with eps 1e-5; timm's ``RmsNorm``)."""

    kind: Literal["rmsnorm"] = "rmsnorm"
    role = "norm"
    weight_init = "keep"  # weight 1 (PyTorch's default), as timm and iGPT
    eps: Annotated[float, Field(gt=0)] = 1e-6
    """Added to the mean square (timm's default 1e-6; iGPT uses 1e-5)."""
    affine: bool = True
    """A learned per-channel scale."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = inputs[0]
        if not isinstance(x, Tokens | Vector):
            raise ShapeError(
                f"rmsnorm normalises tokens or a vector, but receives {x}",
                hint="normalise a feature map after flattening it to tokens",
            )
        return self, x

    def build(self, *inputs: TensorType) -> nn.Module:
        x = inputs[0]
        assert isinstance(x, Tokens | Vector)
        return nn.RMSNorm(x.dim, eps=self.eps, elementwise_affine=self.affine)
