"""CCT's convolutional tokenizer (Hassani et al., arXiv:2104.05704 §3.2, Eq. 2).

``layers`` stacked [conv (no bias) → ReLU → max-pool] blocks turn the image into a feature
map whose positions are the tokens. Intermediate layers have ``hidden`` channels (64 in the
official code), the last one ``dim``. Submodules ``conv_layers.<i>.0`` as in the official
code, so state_dicts line up.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

import torch
from pydantic import Field
from torch import nn

from vitgraph.block import Block
from vitgraph.errors import ShapeError
from vitgraph.registry import register
from vitgraph.shapes import Image, TensorType, Tokens, conv_out, expect_image
from vitgraph.vocabulary import Activation, PosInt, activation

NonNeg = Annotated[int, Field(ge=0)]


@register
class ConvTokenizer(Block):
    """Stacked conv → activation → max-pool layers; the final map's positions are tokens."""

    kind: Literal["conv_tokenizer"] = "conv_tokenizer"
    role = "tokenizer"
    weight_init = "keep"  # build draws vit-pytorch CCT's kaiming_normal_ convs
    dim: PosInt
    """Token width (channels of the last conv)."""
    layers: PosInt = 1
    """Number of conv blocks (the C in CCT-L/PxC)."""
    kernel: PosInt = 3
    """Conv kernel side (the P in CCT-L/PxC)."""
    stride: PosInt | None = None
    """Conv stride; default: max(1, kernel // 2 - 1), as the official code."""
    padding: NonNeg | None = None
    """Conv padding; default: max(1, kernel // 2)."""
    hidden: PosInt = 64
    """Channels of the intermediate conv layers."""
    pool_kernel: PosInt = 3
    """Max-pool window."""
    pool_stride: PosInt = 2
    """Max-pool stride."""
    pool_padding: NonNeg = 1
    """Max-pool padding."""
    max_pool: bool = True
    """Max-pool after each conv."""
    act: Activation | None = "relu"
    """Activation after each conv (null: none)."""
    bias: bool = False
    """Bias in the convs (CCT has none)."""
    flatten: bool = True
    """Return tokens; ``false`` returns the feature map."""

    def infer(self, *inputs: TensorType) -> tuple[Self, TensorType]:
        image = expect_image(inputs[0], self.kind)
        stride = self.stride or max(1, self.kernel // 2 - 1)
        padding = self.padding if self.padding is not None else max(1, self.kernel // 2)
        rows, cols = image.height, image.width
        for layer in range(self.layers):
            before = (rows, cols)
            rows, cols = (conv_out(s, self.kernel, stride, padding) for s in (rows, cols))
            if self.max_pool and min(rows, cols) > 0:
                rows, cols = (
                    conv_out(s, self.pool_kernel, self.pool_stride, self.pool_padding)
                    for s in (rows, cols)
                )
            if min(rows, cols) <= 0:
                raise ShapeError(
                    f"conv layer {layer} (kernel {self.kernel}, stride {stride}, padding "
                    f"{padding}{', then max-pool' if self.max_pool else ''}) leaves nothing of "
                    f"the {before[0]}x{before[1]} map it receives from the "
                    f"{image.height}x{image.width} image",
                    field="layers",
                    hint="use fewer conv layers or a larger input",
                )
        resolved = self.model_copy(update={"stride": stride, "padding": padding})
        if not self.flatten:
            return resolved, Image(self.dim, rows, cols)
        return resolved, Tokens(self.dim, (rows, cols))

    def build(self, *inputs: TensorType) -> nn.Module:
        image = expect_image(inputs[0], self.kind)
        assert self.stride is not None and self.padding is not None
        widths = [image.channels] + [self.hidden] * (self.layers - 1) + [self.dim]
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(c_in, c_out, self.kernel, self.stride, self.padding, bias=self.bias),
                activation(self.act) if self.act else nn.Identity(),
                nn.MaxPool2d(self.pool_kernel, self.pool_stride, self.pool_padding)
                if self.max_pool
                else nn.Identity(),
            )
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        ]
        return Tokenizer(layers, self.flatten)


class Tokenizer(nn.Module):
    def __init__(self, layers: list[nn.Module], flatten: bool) -> None:
        super().__init__()
        self.conv_layers = nn.Sequential(*layers)
        self.flatten = flatten
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_layers(x)  # (B, dim, rows, cols)
        return x.flatten(2).transpose(1, 2) if self.flatten else x  # (B, rows*cols, dim)
