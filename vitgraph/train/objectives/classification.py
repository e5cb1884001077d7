"""Image classification: cross-entropy (with label smoothing) on ``(images, labels)``
batches, held-out top-1 accuracy; for any classifier spec MixUp, and Gong et al.'s three
over-smoothing losses added with weights. Distillation and token labeling refine it
(``distillation.py``, ``token_labeling.py``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vitgraph.ir import Validated
from vitgraph.train import losses, mixing
from vitgraph.train.config import TrainConfig
from vitgraph.train.objectives import objective
from vitgraph.train.objectives.base import Objective
from vitgraph.train.taps import Taps


@objective("classification")
class Classification(Objective):
    #: the model's train-mode output carries per-token logits to train (token labeling)
    token_label = False

    def __init__(
        self,
        graph: Validated,
        model: nn.Module,
        config: TrainConfig,
        classes: int,
        teacher: nn.Module | None = None,
    ) -> None:
        super().__init__(graph, model, config, classes, teacher)
        needs_taps = (
            self.token_label
            or config.cosine_weight
            or config.contrastive_weight
            or config.patch_mix_weight
        )
        self.taps = Taps(graph, model) if needs_taps else None

    def step(
        self,
        model: nn.Module,
        batch: tuple[torch.Tensor, torch.Tensor],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of ``(images, labels)`` and the number classified right."""
        images, labels = batch
        loss, logits = self.loss_and_logits(model, images, labels, generator)
        return loss, {"correct": float((logits.argmax(-1) == labels).sum().item())}

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, split: Any, device: str, autocast: Any
    ) -> dict[str, float]:
        """Top-1 and top-5 accuracy on ``split`` (eval mode)."""
        model.eval()
        correct = top5 = 0
        for begin in range(0, len(split), 256):
            idx = torch.arange(begin, min(begin + 256, len(split)))
            images, labels = split.batch(idx, device)
            with autocast():
                logits = model(images)
            best = logits.float().topk(min(5, logits.shape[-1]), dim=-1).indices
            correct += (best[:, 0] == labels).sum().item()
            top5 += (best == labels[:, None]).any(-1).sum().item()
        return {"val_accuracy": correct / len(split), "val_top5": top5 / len(split)}

    def close(self) -> None:
        if self.taps is not None:
            self.taps.remove()

    def loss_and_logits(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, class logits for the running accuracy)."""
        cfg = self.config
        soft = cfg.mixup > 0 or cfg.patch_mix_weight > 0 or self.token_label
        target = losses.one_hot(labels, self.classes) if soft else labels
        token_target = None
        if self.token_label:
            token_target = self._token_targets(images, labels)
        if cfg.mixup > 0:
            lam = mixing.sample_lambda(cfg.mixup, generator)
            images, target = mixing.mixup(images, target, lam)
        patch_labels = None
        if cfg.patch_mix_weight > 0:
            assert self.taps is not None
            box = self._box(generator)
            images, patch_labels = mixing.patch_mix(images, labels, self.taps.patch_side, box)
            target, _ = mixing.mix_token_targets(target, None, box)
        if self.token_label and cfg.mix_token:
            assert self.taps is not None
            box = self._box(generator)
            self.taps.edit = lambda tokens: mixing.mix_tokens(tokens, box)
            target, token_target = mixing.mix_token_targets(target, token_target, box)
        try:
            out = model(images)
        finally:
            if self.taps is not None:
                self.taps.edit = None
        loss, logits = self._main_loss(out, images, target, token_target)
        if self.taps is not None:
            loss = loss + self._over_smoothing(patch_labels)
        return loss, logits

    def _box(self, generator: torch.Generator) -> mixing.Box:
        assert self.taps is not None
        lam = mixing.sample_lambda(1.0, generator)
        return mixing.random_box(*self.taps.grid, lam, generator)

    def _token_targets(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-token targets (token labeling only)."""
        raise NotImplementedError

    def _main_loss(
        self,
        out: Any,
        images: torch.Tensor,
        target: torch.Tensor,
        token_target: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, class logits) of the model's output; subclasses read their heads'."""
        return losses.classification_loss(out, target, self.config.label_smoothing), out

    def _over_smoothing(self, patch_labels: torch.Tensor | None) -> torch.Tensor:
        cfg, taps = self.config, self.taps
        assert taps is not None and taps.embedded is not None
        extra = taps.last_patches.new_zeros(())
        if cfg.cosine_weight:
            extra = extra + cfg.cosine_weight * losses.cosine_similarity_penalty(taps.last_patches)
        if cfg.contrastive_weight:
            extra = extra + cfg.contrastive_weight * losses.patch_contrastive_loss(
                taps.last_patches, taps.embedded
            )
        if cfg.patch_mix_weight and patch_labels is not None:
            extra = extra + cfg.patch_mix_weight * losses.patch_mixing_loss(
                taps.classify_patches(), patch_labels
            )
        return extra
