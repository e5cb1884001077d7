"""The loss of one micro-batch, chosen by the spec's heads and the config.

* a spec whose head asks for distillation (DeiT ⚗) trains its two heads: against the teacher
  (hard or soft) when one is given, otherwise both against the labels;
* a spec whose head asks for token labeling (LV-ViT) trains with Token Labeling: the class
  loss plus the dense per-token loss, with MixToken; token labels come from the
  teacher's per-patch predictions, or are the image label of each token's source;
* any spec: MixUp, and Gong et al.'s three over-smoothing losses, added with weights.
"""

from __future__ import annotations

import torch
from torch import nn

from vitgraph.train import losses, mixing
from vitgraph.train.config import TrainConfig
from vitgraph.train.taps import Taps
from vitgraph.train.teacher import dense_targets, teacher_logits


def objectives_of(graph) -> set[str]:
    """The training objectives the spec's blocks ask for (``Block.objective``)."""
    return {o for node in graph.nodes if (o := type(node.params).objective) is not None}


class Objective:
    def __init__(
        self,
        graph,
        model: nn.Module,
        config: TrainConfig,
        classes: int,
        teacher: nn.Module | None = None,
    ) -> None:
        wanted = objectives_of(graph)
        self.distilled = "distillation" in wanted
        self.token_label = "token_labeling" in wanted
        self.config, self.classes, self.teacher = config, classes, teacher
        needs_taps = (
            self.token_label
            or config.cosine_weight
            or config.contrastive_weight
            or config.patch_mix_weight
        )
        self.taps = Taps(graph, model) if needs_taps else None

    def __call__(
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
        assert self.taps is not None
        if self.teacher is not None:
            return dense_targets(self.teacher, images, self.taps.grid)
        one = losses.one_hot(labels, self.classes)  # no annotator: each token, its image
        return one[:, None, :].expand(-1, self.taps.grid[0] * self.taps.grid[1], -1)

    def _main_loss(
        self, out, images: torch.Tensor, target: torch.Tensor, token_target: torch.Tensor | None
    ):
        cfg = self.config
        if self.distilled and isinstance(out, tuple):
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
        if self.token_label and isinstance(out, tuple):
            cls, tokens = out
            assert token_target is not None
            loss = losses.token_label_loss(
                cls,
                tokens,
                target,
                token_target,
                weight=cfg.token_label_weight,
                smoothing=cfg.label_smoothing,
            )
            return loss, cls
        return losses.classification_loss(out, target, cfg.label_smoothing), out

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
