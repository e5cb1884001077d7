"""Token Labeling (LV-ViT, arXiv:2104.10858 §3): the class loss plus the dense per-token
loss, with MixToken. Token labels come from the teacher's per-patch predictions, or are
the image label of each token's source without one. A spec asks for it with a head
whose ``objective`` is ``token_labeling`` (``token_label_head``)."""

from __future__ import annotations

from typing import Any

import torch

from vitgraph.train import losses
from vitgraph.train.objectives import objective
from vitgraph.train.objectives.classification import Classification
from vitgraph.train.teacher import dense_targets


@objective("token_labeling")
class TokenLabeling(Classification):
    token_label = True

    def _token_targets(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        assert self.taps is not None
        if self.teacher is not None:
            return dense_targets(self.teacher, images, self.taps.grid)
        one = losses.one_hot(labels, self.classes)  # no annotator: each token, its image
        return one[:, None, :].expand(-1, self.taps.grid[0] * self.taps.grid[1], -1)

    def _main_loss(
        self,
        out: Any,
        images: torch.Tensor,
        target: torch.Tensor,
        token_target: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(out, tuple):  # set_distilled_training-like merged output
            return super()._main_loss(out, images, target, token_target)
        cls, tokens = out
        assert token_target is not None
        loss = losses.token_label_loss(
            cls,
            tokens,
            target,
            token_target,
            weight=self.config.token_label_weight,
            smoothing=self.config.label_smoothing,
        )
        return loss, cls
