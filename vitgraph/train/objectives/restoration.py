"""Image restoration (IPT, Chen et al., arXiv:2012.00364 §3.2): the model restores a
degraded copy of each clean image, trained by L1 to the clean image plus 0.1 × a
supervised contrastive loss on the decoder's per-patch features (Eq. 7-8: patches of one
image are positives, of other images negatives; temperature 0.07, Khosla et al. 2020's
L_out). Degradations are made on the fly (``vitgraph.train.degrade``): bicubic
down-sampling by the model's scale, Gaussian noise σ 30 or 50, synthetic rain.

The batch holds clean images at the model's *output* size in [0, 255]; held-out metrics
are PSNR and SSIM (scikit-image) of the model and of the bicubic (or identity) baseline.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vitgraph.ir import Validated
from vitgraph.train import degrade
from vitgraph.train.image_quality import psnr, ssim
from vitgraph.train.objectives import objective
from vitgraph.train.objectives.base import Objective

#: IPT's weight of the contrastive loss (§3.2, λ = 0.1) and its temperature
CONTRASTIVE_WEIGHT = 0.1
TEMPERATURE = 0.07


def supcon(features: torch.Tensor, labels: torch.Tensor, temperature: float = TEMPERATURE):
    """Supervised contrastive loss (Khosla et al. 2020, Eq. 2): for each anchor, the mean
    over its positives p of ``-log(exp(z·z_p/τ) / Σ_{a≠anchor} exp(z·z_a/τ))`` on
    L2-normalised features, averaged over the anchors that have a positive."""
    z = F.normalize(features.float(), dim=-1)  # (M, D)
    own = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(own, float("-inf"))
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~own
    count = positives.sum(1)
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(1) / count.clamp(min=1)
    return per_anchor[count > 0].mean()


def _last_repeat(model: nn.Module, node: str) -> nn.Module:
    """The module of ``node``'s last repeat (``decoder.11``), or of ``node`` itself."""
    found = {name: m for name, m in model.named_modules() if re.fullmatch(rf"{node}(\.\d+)?", name)}
    if not found:
        raise ValueError(f"the restoration objective reads the features of node '{node}', "
                         "which the model does not have")  # fmt: skip
    return found[max(found, key=lambda n: int(n.rsplit(".", 1)[1]) if "." in n else -1)]


@objective("restoration")
class Restoration(Objective):
    """L1 + 0.1 × SupCon on the decoder's patches; the degradation by the model's scale:
    bicubic down-sampling (scale > 1), else Gaussian noise of ``sigma``."""

    classifies = False
    data_at_output_size = True
    #: the node whose output are the per-patch features of the contrastive term
    features: ClassVar[str] = "decoder"
    sigma: ClassVar[float] = 30.0
    rain: ClassVar[bool] = False

    def __init__(self, graph: Validated, model: nn.Module, *rest: Any) -> None:
        super().__init__(graph, model, *rest)
        self.scale = graph.output_shape[-1] // graph.input_shape[-1]
        self._seen: list[torch.Tensor] = []
        tap = _last_repeat(model, self.features)
        self._hook = tap.register_forward_hook(lambda m, args, out: self._seen.append(out))

    def degrade(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.scale > 1:
            return degrade.bicubic_down(clean, self.scale)
        if self.rain:
            return degrade.rain_streaks(clean, generator)
        return degrade.gaussian_noise(clean, self.sigma, generator)

    def baseline(self, degraded: torch.Tensor) -> torch.Tensor:
        """What the model must beat: bicubic up-sampling, or the degraded image itself."""
        return degrade.bicubic_up(degraded, self.scale)

    def losses(self, model: nn.Module, clean: torch.Tensor, generator: Any = None):
        """(L1, SupCon) of one batch of clean images."""
        self._seen.clear()
        restored = model(self.degrade(clean, generator))
        l1 = F.l1_loss(restored, clean)
        patches = self._seen[-1]  # (B, N, D)
        labels = torch.arange(len(clean), device=clean.device).repeat_interleave(patches.shape[1])
        return l1, supcon(patches.flatten(0, 1), labels)

    def step(
        self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], generator: Any
    ) -> tuple[torch.Tensor, dict[str, float]]:
        clean, _ = batch
        l1, contrastive = self.losses(model, clean, generator)
        return l1 + CONTRASTIVE_WEIGHT * contrastive, {
            "l1": l1.item() * len(clean),
            "supcon": contrastive.item() * len(clean),
        }

    @torch.no_grad()
    def scores(self, model: nn.Module, clean: torch.Tensor, seed: int = 0) -> dict[str, float]:
        """PSNR and SSIM of the model and of the baseline on clean images (eval mode; a
        seeded degradation). SR scores leave the ``scale`` border pixels out."""
        model.eval()
        degraded = self.degrade(clean, torch.Generator().manual_seed(seed))
        restored = model(degraded).clamp(0, 255)
        base = self.baseline(degraded)
        shave = self.scale if self.scale > 1 else 0
        return {
            "psnr": psnr(restored, clean, shave),
            "ssim": ssim(restored, clean, shave),
            "psnr_baseline": psnr(base, clean, shave),
            "ssim_baseline": ssim(base, clean, shave),
        }

    def evaluate(
        self, model: nn.Module, split: Any, device: str, autocast: Any
    ) -> dict[str, float]:
        clean, _ = split.batch(torch.arange(len(split)), device)
        with autocast():
            found = self.scores(model, clean)
        return {f"val_{k}": v for k, v in found.items()}

    def close(self) -> None:
        self._hook.remove()


@objective("restoration_noise50")
class Denoise50(Restoration):
    """Denoising at Gaussian noise σ 50 (IPT's second denoising task)."""

    sigma = 50.0


@objective("restoration_rain")
class Derain(Restoration):
    """Deraining with the synthetic rain model."""

    rain = True
