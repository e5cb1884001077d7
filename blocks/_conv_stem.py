"""The convolutional patch stem shared by DeepViT's ``deepvit_stem`` and LV-ViT's
``lvvit_stem`` (both after T2T-ViT's "deep-narrow" stem): a 7×7 stride-2 conv, then 3×3
convs (BatchNorm + ReLU, no bias), then a strided projection of kernel patch/2, so each
token still covers patch×patch pixels. The two kinds differ only in how many convs they
stack (DeepViT's ``PatchEmbed_CNN``: two; LV-ViT's ``PatchEmbed4_2``: three).

Not a block family: it registers no kind. Submodule names are the official ones
(conv1, bn1, conv2, bn2, ..., proj), so checkpoints load by key.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vitgraph.block import Fold, batchnorm_pairs
from vitgraph.shapes import Image, conv_out


def stem_grid(image: Image, patch: int) -> tuple[int, int]:
    """Token rows and columns after the stride-2 conv and the patch/2 projection."""
    half = patch // 2
    return (
        conv_out(conv_out(image.height, 7, 2, 3), half, half, 0),
        conv_out(conv_out(image.width, 7, 2, 3), half, half, 0),
    )


def stem_folds(module: nn.Module) -> list[Fold]:
    """Each conv's BatchNorm folds into the conv (a ``ConvStem``'s ``bn{i}``/``conv{i}``)."""
    if not isinstance(module, ConvStem):
        return []
    return batchnorm_pairs(module, *((f"bn{i}", f"conv{i}") for i in range(1, module.convs + 1)))


class ConvStem(nn.Module):
    """One conv (BatchNorm + ReLU) per entry of ``widths``, then the projection."""

    def __init__(self, channels: int, widths: Sequence[int], dim: int, kernel: int) -> None:
        super().__init__()
        self.convs = len(widths)
        for i, (c_in, c_out) in enumerate(zip((channels, *widths), widths, strict=False), 1):
            first = i == 1
            self.add_module(
                f"conv{i}",
                nn.Conv2d(
                    c_in,
                    c_out,
                    7 if first else 3,
                    stride=2 if first else 1,
                    padding=3 if first else 1,
                    bias=False,
                ),
            )
            self.add_module(f"bn{i}", nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU()
        self.proj = nn.Conv2d(widths[-1], dim, kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.convs + 1):  # unrolled by fx: plain Python over a constant
            x = self.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, rows*cols, dim)
