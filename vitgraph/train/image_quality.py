"""PSNR and SSIM of restored images, by scikit-image (the ``restoration`` extra): images
``(B, 3, H, W)`` or ``(3, H, W)`` in [0, 255], rounded to 8 bits as the benchmarks score
them; SSIM over the RGB channels (``channel_axis``), Gaussian-weighted as Wang et al. 2004.
"""

from __future__ import annotations

import torch

MISSING = "PSNR and SSIM need scikit-image: pip install 'vitgraph[restoration]'"


def _skimage():
    try:
        from skimage import metrics
    except ImportError:
        raise ImportError(MISSING) from None
    return metrics


def _uint8(images: torch.Tensor):
    batch = images if images.dim() == 4 else images[None]
    return batch.detach().float().cpu().round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def psnr(restored: torch.Tensor, reference: torch.Tensor, shave: int = 0) -> float:
    """Mean PSNR in dB over the batch (``shave`` border pixels left out, as SR papers)."""
    metrics = _skimage()
    a, b = _uint8(restored), _uint8(reference)
    if shave:
        a, b = a[:, shave:-shave, shave:-shave], b[:, shave:-shave, shave:-shave]
    scores = [
        metrics.peak_signal_noise_ratio(y, x, data_range=255) for x, y in zip(a, b, strict=True)
    ]
    return float(sum(scores) / len(scores))


def ssim(restored: torch.Tensor, reference: torch.Tensor, shave: int = 0) -> float:
    """Mean SSIM over the batch (Gaussian window, sigma 1.5, as Wang et al. 2004)."""
    metrics = _skimage()
    a, b = _uint8(restored), _uint8(reference)
    if shave:
        a, b = a[:, shave:-shave, shave:-shave], b[:, shave:-shave, shave:-shave]
    scores = [
        metrics.structural_similarity(
            y, x, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False,
        )
        for x, y in zip(a, b, strict=True)
    ]  # fmt: skip
    return float(sum(scores) / len(scores))
