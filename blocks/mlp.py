"""Feed-forward blocks: the transformer MLP (ViT §3.1: two layers with a GELU) and the
gated MLP (GLU variants, Shazeer 2020 arXiv:2002.05202 §2: SwiGLU is ``silu(x W) * (x V)``
then ``W2``; EVA-02, DINOv2-g and timm's ``SwiGLU``/``SwiGLUPacked``/``GluMlp``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import TensorType, Tokens, Vector
from vitgraph.vocabulary import Activation, DropRate, PosInt, activation, scaled_width


@register
class MlpBlock(Block):
    """Linear → activation → dropout → Linear → dropout, on the last dim."""

    kind: Literal["mlp"] = "mlp"
    weight_init = "trunc_normal_linear"  # timm init_weights_vit_timm (most families)
    role = "mlp"
    ratio: Annotated[float, Field(gt=0)] = 4.0
    """Hidden width as a multiple of the input width."""
    hidden: PosInt | None = None
    """Hidden width; default: int(dim * ratio)."""
    out_dim: PosInt | None = None
    """Output width; default: the input width."""
    act: Activation = "gelu"
    """Activation between the layers."""
    drop: DropRate = 0.0
    """Dropout after each layer."""
    bias: bool = True
    """Biases in both layers."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = inputs[0]
        if not isinstance(x, Tokens | Vector):
            raise ShapeError(f"mlp takes tokens or a vector, but receives {x}")
        dim = x.dim
        hidden = self.hidden or scaled_width(dim, self.ratio)
        out = self.out_dim or dim
        resolved = self.model_copy(update={"hidden": hidden, "out_dim": out})
        if isinstance(x, Tokens):
            return resolved, Tokens(out, x.grid, x.prefix, x.count)
        return resolved, Vector(out)

    def build(self, *inputs: TensorType) -> nn.Module:
        x = inputs[0]
        assert isinstance(x, Tokens | Vector) and self.hidden and self.out_dim
        return Mlp(x.dim, self.hidden, self.out_dim, self.act, self.drop, self.bias)

    def output_affine(self, module: Any) -> str | None:
        """The second layer: a LayerScale after the MLP folds into ``fc2``."""
        return "fc2" if isinstance(module, Mlp) else None


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int, act: str, drop: float, bias: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = activation(act)
        self.drop1 = nn.Dropout(drop) if drop else nn.Identity()
        self.fc2 = nn.Linear(hidden, out, bias=bias)
        self.drop2 = nn.Dropout(drop) if drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


@register
class GluMlpBlock(Block):
    """Gated MLP: ``fc2(act(gate) * value)`` where gate and value are two linear maps of
    the input (Shazeer 2020 §2), then dropout; SwiGLU with the default ``act: silu``."""

    kind: Literal["glu_mlp"] = "glu_mlp"
    weight_init = "trunc_normal_linear"
    role = "mlp"
    ratio: Annotated[float, Field(gt=0)] = 4.0
    """Width of the gated product as a multiple of the input width (SwiGLU models use 8/3
    to keep the MLP's parameters of a 4x plain MLP)."""
    hidden: PosInt | None = None
    """Width of the gated product (fc2's input); default: int(dim * ratio)."""
    out_dim: PosInt | None = None
    """Output width; default: the input width."""
    act: Activation = "silu"
    """Activation of the gate (silu: SwiGLU; gelu: GeGLU)."""
    drop: DropRate = 0.0
    """Dropout after the product and after the output layer."""
    bias: bool = True
    """Biases in the linear layers."""
    packed: bool = False
    """One fused first layer ``fc1`` whose output halves are the two branches (timm's
    ``GluMlp``/``SwiGLUPacked``); false: two layers ``fc1_g`` (gate) and ``fc1_x``
    (value), timm's ``SwiGLU``."""
    gate_last: bool = False
    """With ``packed``: the second half of ``fc1`` is the gate (timm's ``GluMlp``
    default); false: the first half (``SwiGLUPacked``)."""
    norm: bool = False
    """A LayerNorm over the gated product before ``fc2`` (the sub-LN of EVA-02 §2, after
    NormFormer; timm's ``scale_mlp``)."""
    norm_eps: Annotated[float, Field(gt=0)] = 1e-6
    """Epsilon of that LayerNorm (timm's EVA: 1e-6)."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        x = inputs[0]
        if not isinstance(x, Tokens | Vector):
            raise ShapeError(f"glu_mlp takes tokens or a vector, but receives {x}")
        hidden = self.hidden or scaled_width(x.dim, self.ratio)
        out = self.out_dim or x.dim
        resolved = self.model_copy(update={"hidden": hidden, "out_dim": out})
        if isinstance(x, Tokens):
            return resolved, Tokens(out, x.grid, x.prefix, x.count)
        return resolved, Vector(out)

    def build(self, *inputs: TensorType) -> nn.Module:
        x = inputs[0]
        assert isinstance(x, Tokens | Vector) and self.hidden and self.out_dim
        module: GluMlp | PackedGluMlp
        if self.packed:
            module = PackedGluMlp(
                x.dim, self.hidden, self.out_dim, self.act, self.drop, self.bias, self.gate_last
            )
        else:
            module = GluMlp(x.dim, self.hidden, self.out_dim, self.act, self.drop, self.bias)
        if self.norm:
            module.norm = nn.LayerNorm(self.hidden, eps=self.norm_eps)
        return module

    def output_affine(self, module: Any) -> str | None:
        """The output layer: a LayerScale after the MLP folds into ``fc2``."""
        return "fc2" if isinstance(module, GluMlp | PackedGluMlp) else None


class GluMlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int, act: str, drop: float, bias: bool) -> None:
        super().__init__()
        self.fc1_g = nn.Linear(dim, hidden, bias=bias)
        self.fc1_x = nn.Linear(dim, hidden, bias=bias)
        self.act = activation(act)
        self.drop1 = nn.Dropout(drop) if drop else nn.Identity()
        self.norm: nn.Module = nn.Identity()  # the sub-LN (``norm``), set by the block
        self.fc2 = nn.Linear(hidden, out, bias=bias)
        self.drop2 = nn.Dropout(drop) if drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1_g(x)) * self.fc1_x(x)  # (..., hidden)
        return self.drop2(self.fc2(self.norm(self.drop1(x))))


class PackedGluMlp(nn.Module):
    def __init__(
        self, dim: int, hidden: int, out: int, act: str, drop: float, bias: bool, gate_last: bool
    ) -> None:
        super().__init__()
        self.gate_last = gate_last
        self.fc1 = nn.Linear(dim, 2 * hidden, bias=bias)
        self.act = activation(act)
        self.drop1 = nn.Dropout(drop) if drop else nn.Identity()
        self.norm: nn.Module = nn.Identity()  # the sub-LN (``norm``), set by the block
        self.fc2 = nn.Linear(hidden, out, bias=bias)
        self.drop2 = nn.Dropout(drop) if drop else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.fc1(x).chunk(2, dim=-1)  # each (..., hidden)
        x = x1 * self.act(x2) if self.gate_last else self.act(x1) * x2
        return self.drop2(self.fc2(self.norm(self.drop1(x))))
