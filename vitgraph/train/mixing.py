"""Mixing augmentations, each returning the labels that match what it mixed.

* MixUp (Zhang et al. 2018): a convex blend of the batch with its reverse;
* MixToken (LV-ViT arXiv:2104.10858 §3.2): a box of the *token grid* after the patch
  embedding is taken from the batch's reverse; the class label mixes by the kept area and
  every token label follows its token;
* patch mixing (Gong et al. arXiv:2104.12753 §4): CutMix whose box is aligned to the patch
  grid, so each patch comes from exactly one image and can be supervised by its label.

The partner of sample ``b`` is always sample ``B-1-b`` (``flip(0)``), as in LV-ViT. Random
choices come from an explicit ``torch.Generator`` so a run is reproducible and resumable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Box:
    """A rectangle ``[top, bottom) x [left, right)`` of a ``rows x cols`` grid."""

    top: int
    left: int
    bottom: int
    right: int
    rows: int
    cols: int

    @property
    def area(self) -> int:
        return (self.bottom - self.top) * (self.right - self.left)

    @property
    def kept(self) -> float:
        """Fraction of the grid that still holds the sample's own content (lambda)."""
        return 1.0 - self.area / (self.rows * self.cols)

    def mask(self, device: torch.device | None = None) -> torch.Tensor:
        """``(rows * cols,)`` bool, True inside the box (row-major like the token order)."""
        grid = torch.zeros(self.rows, self.cols, dtype=torch.bool, device=device)
        grid[self.top : self.bottom, self.left : self.right] = True
        return grid.flatten()


def random_box(rows: int, cols: int, lam: float, generator: torch.Generator) -> Box:
    """CutMix's box: area about ``1 - lam`` of the grid, centre uniform, clipped at the
    border (so the realised ``Box.kept`` may exceed ``lam``; labels use ``kept``)."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(rows * cut), int(cols * cut)
    cy = int(torch.randint(rows, (1,), generator=generator))
    cx = int(torch.randint(cols, (1,), generator=generator))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, rows)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, cols)
    return Box(top, left, bottom, right, rows, cols)


def sample_lambda(alpha: float, generator: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw from ``generator`` (torch's Beta has no generator)."""
    a = torch._standard_gamma(
        torch.tensor([alpha, alpha], dtype=torch.float64), generator=generator
    )
    return float(a[0] / a.sum())


def mixup(images: torch.Tensor, target: torch.Tensor, lam: float):
    """MixUp: ``lam * x + (1 - lam) * x.flip(0)``; ``target`` holds probabilities."""
    return (images * lam + images.flip(0) * (1 - lam), target * lam + target.flip(0) * (1 - lam))


def mix_tokens(tokens: torch.Tensor, box: Box) -> torch.Tensor:
    """MixToken on patch tokens ``(B, N, D)`` (N = rows * cols, row-major): the tokens
    inside ``box`` come from the partner sample."""
    inside = box.mask(tokens.device)[None, :, None]
    return torch.where(inside, tokens.flip(0), tokens)


def mix_token_targets(class_target: torch.Tensor, token_target: torch.Tensor | None, box: Box):
    """The labels matching :func:`mix_tokens`: the class label mixes by area (``kept``
    own, the rest the partner's); each token label ``(B, N, C)`` is its source's."""
    lam = box.kept
    mixed_class = class_target * lam + class_target.flip(0) * (1 - lam)
    if token_target is None:
        return mixed_class, None
    return mixed_class, mix_tokens(token_target, box)


def patch_mix(images: torch.Tensor, labels: torch.Tensor, patch: int, box: Box):
    """Patch-aligned CutMix (Gong et al. §4): the pixels of the grid cells in ``box`` come
    from the partner. ``labels`` are class indices ``(B,)``. Returns the mixed images and
    each patch's source label ``(B, N)``; the image label mixes by ``box.kept`` (see
    :func:`mix_token_targets`)."""
    rows, cols = box.rows, box.cols
    if images.shape[-2] != rows * patch or images.shape[-1] != cols * patch:
        raise ValueError(
            f"a {rows}x{cols} grid of {patch}-pixel patches does not tile "
            f"the {images.shape[-2]}x{images.shape[-1]} images"
        )
    pixels = box.mask(images.device).view(rows, cols)
    pixels = pixels.repeat_interleave(patch, 0).repeat_interleave(patch, 1)
    mixed = torch.where(pixels, images.flip(0), images)
    inside = box.mask(labels.device)[None, :]
    patch_labels = torch.where(inside, labels.flip(0)[:, None], labels[:, None])
    return mixed, patch_labels
