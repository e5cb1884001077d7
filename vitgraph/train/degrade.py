"""On-the-fly degradations of clean images for restoration training (IPT, arXiv:2012.00364
§3.2 "we use ... bicubic interpolation to obtain low-resolution images, add Gaussian
noise ... and synthetic rain streaks"): images are ``(B, 3, H, W)`` floats in [0, 255].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def bicubic_down(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C, H/scale, W/scale)``: bicubic with antialiasing (as
    MATLAB's ``imresize``, the SR benchmarks' down-sampler), clamped to [0, 255]."""
    if scale == 1:
        return hr
    size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    return F.interpolate(hr, size=size, mode="bicubic", antialias=True).clamp(0, 255)


def bicubic_up(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline of super-resolution: ``lr`` up-sampled by ``scale``."""
    if scale == 1:
        return lr
    return F.interpolate(lr, scale_factor=scale, mode="bicubic").clamp(0, 255)


def gaussian_noise(
    clean: torch.Tensor, sigma: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Additive white Gaussian noise of std ``sigma`` (on [0, 255]; IPT: 30 and 50)."""
    noise = torch.randn(clean.shape, generator=generator, device="cpu").to(clean)
    return clean + sigma * noise


def rain_streaks(
    clean: torch.Tensor,
    generator: torch.Generator | None = None,
    density: float = 0.02,
    length: int = 15,
    angle: float | None = None,
    brightness: float = 200.0,
) -> torch.Tensor:
    """A synthetic rain model (the additive streak model of Rain100L, Yang et al. 2017):
    sparse random seeds smeared into parallel slanted lines of ``length`` pixels by a
    line-shaped kernel, added to every channel and clamped to [0, 255]."""
    b, _, h, w = clean.shape
    seeds = (torch.rand((b, 1, h, w), generator=generator) < density).float()
    theta = (
        angle
        if angle is not None
        else float(torch.empty(1).uniform_(-0.5, 0.5, generator=generator))
    )
    kernel = torch.zeros(length, length)
    centre = length // 2
    for step in range(length):  # a line through the centre at angle theta from vertical
        t = step - centre
        row = centre + t
        col = centre + round(t * math.tan(theta))
        if 0 <= col < length:
            kernel[row, col] = 1.0
    kernel = (kernel / kernel.sum()).view(1, 1, length, length)
    streaks = F.conv2d(seeds, kernel, padding=centre) * brightness
    return (clean + streaks.to(clean)).clamp(0, 255)
