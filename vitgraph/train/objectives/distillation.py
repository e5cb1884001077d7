"""DeiT's distillation (arXiv:2012.12877 §4): the class head learns the labels and the
distillation head the teacher (hard or soft), or both the labels without a teacher. A
spec asks for it with a head whose ``objective`` is ``distillation``."""

from __future__ import annotations

from typing import Any

import torch

from vitgraph.train import losses
from vitgraph.train.objectives import objective
from vitgraph.train.objectives.classification import Classification
from vitgraph.train.teacher import teacher_logits


@objective("distillation")
class Distillation(Classification):
    def _main_loss(
        self,
        out: Any,
        images: torch.Tensor,
        target: torch.Tensor,
        token_target: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(out, tuple):  # set_distilled_training(False): one merged output
            return super()._main_loss(out, images, target, token_target)
        cfg = self.config
        cls, dist = out
        if self.teacher is None:  # DeiT without a teacher: both heads learn the labels
            loss = (
                losses.classification_loss(cls, target, cfg.label_smoothing)
                + losses.classification_loss(dist, target, cfg.label_smoothing)
            ) / 2
        else:
            loss = losses.distillation_loss(
                cls,
                dist,
                teacher_logits(self.teacher, images),
                target,
                kind=cfg.distill,
                alpha=cfg.distill_alpha,
                tau=cfg.distill_tau,
                smoothing=cfg.label_smoothing,
            )
        return loss, (cls + dist) / 2
