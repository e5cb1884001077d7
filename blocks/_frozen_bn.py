"""BatchNorm with frozen statistics and affine (DETR, Carion et al. arXiv:2005.12872 §A.3:
"we freeze the batchnorm weights"; the official ``FrozenBatchNorm2d`` of torchvision).

Weight, bias, running mean and running variance are buffers, not parameters: a detector
trains with batches of 2 images, too few for batch statistics. That is why DETR-R50 has
41,524,768 parameters and not 41,578,336. Not a block family: it registers no kind.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """``x * scale + (bias - mean * scale)`` with ``scale = weight * rsqrt(var + eps)``,
    all four tensors buffers (eps 1e-5, before the rsqrt, as HF's and torchvision's)."""

    weight: torch.Tensor
    bias: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # a BatchNorm2d's checkpoint also counts its batches: nothing here reads it
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[:, None, None] + shift[:, None, None]

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
