"""An exponential moving average of the weights (Polyak & Juditsky 1992; timm's
``ModelEmaV3`` without warm-up, DeiT's ``--model-ema``): after every optimizer step each
floating-point tensor of the model's state (parameters and buffers such as BatchNorm's
running statistics) moves toward the model's, ``ema = decay · ema + (1 − decay) ·
model``; integer buffers (BatchNorm's step count) are copied. The average is evaluated
beside the model every epoch and saved with the run, so a resumed run continues it
exactly."""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = model.state_dict()
        for key, average in self.model.state_dict().items():
            value = current[key].detach()
            if average.is_floating_point():
                average.lerp_(value.to(average.dtype), 1.0 - self.decay)
            else:
                average.copy_(value)
