"""Colour palettes for pixels-as-sequences models (iGPT §3.1: a 9-bit palette found by
k-means over (R, G, B) pixels in [-1, 1], so 512 ids instead of 256³ colours)."""

from __future__ import annotations

import torch

from vitgraph.layers import nearest_colour

#: the id of each pixel's nearest colour (the palette_quantize block computes the same)
nearest = nearest_colour


def fit_palette(
    pixels: torch.Tensor, colors: int, *, seed: int = 0, iterations: int = 25
) -> torch.Tensor:
    """``colors`` k-means centres ``(colors, C)`` of ``pixels`` ``(M, C)``: k-means++
    seeding (Arthur & Vassilvitskii 2007), then Lloyd's iterations; an empty cluster is
    re-seeded at the pixel farthest from its centre. Seeded, so the same pixels give the
    same palette."""
    pixels = pixels.float()
    if len(pixels) < colors:
        raise ValueError(f"{len(pixels)} pixels cannot make a palette of {colors} colours")
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(len(pixels), (1,), generator=generator)
    centres = pixels[first]
    closest = ((pixels - centres[0]) ** 2).sum(-1)
    for _ in range(1, colors):
        if closest.sum() <= 0:  # fewer distinct colours than asked: repeat one
            pick = torch.randint(len(pixels), (1,), generator=generator)
        else:
            pick = torch.multinomial(closest, 1, generator=generator)
        centres = torch.cat([centres, pixels[pick]])
        closest = torch.minimum(closest, ((pixels - pixels[pick]) ** 2).sum(-1))
    for _ in range(iterations):
        ids = nearest(pixels, centres)
        sums = torch.zeros_like(centres).index_add_(0, ids, pixels)
        counts = torch.bincount(ids, minlength=colors).float()
        moved = sums / counts.clamp_min(1)[:, None]
        empty = counts == 0
        if empty.any():
            far = ((pixels - centres[ids]) ** 2).sum(-1).topk(int(empty.sum())).indices
            moved[empty] = pixels[far]
        if torch.equal(moved, centres):
            break
        centres = moved
    return centres
