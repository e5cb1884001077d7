"""What the loop asks of a training objective (``vitgraph.train.objectives``)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from vitgraph.ir import Validated
from vitgraph.train.config import TrainConfig


class Objective:
    """The loss of one micro-batch and the metric on held-out data.

    ``step`` returns the loss and per-batch sums of the running metrics the loop logs
    (their means over the epoch go into the history); ``evaluate`` returns the held-out
    metrics (e.g. ``val_accuracy``). ``close`` removes what the objective attached to
    the model (forward hooks)."""

    name: ClassVar[str] = ""
    #: the objective trains a class head on the data's labels (the loop then sizes the
    #: spec's ``classes`` to the data); False for objectives that predict the input
    classifies: ClassVar[bool] = True
    #: the data are asked for at the model's output size, not its input's (restoration:
    #: clean images the objective degrades into the model's input)
    data_at_output_size: ClassVar[bool] = False

    def __init__(
        self,
        graph: Validated,
        model: nn.Module,
        config: TrainConfig,
        classes: int,
        teacher: nn.Module | None = None,
    ) -> None:
        self.graph, self.config, self.classes, self.teacher = graph, config, classes, teacher
        #: learning-rate factors the blocks declare on their modules (``lr_scale``: e.g.
        #: Deformable DETR's sampling offsets at the official 0.1)
        self.declared_lr_scales = {
            name: float(module.lr_scale)
            for name, module in model.named_modules()
            if isinstance(getattr(module, "lr_scale", None), float)
        }

    def step(
        self, model: nn.Module, batch: Any, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def evaluate(
        self, model: nn.Module, split: Any, device: str, autocast: Any
    ) -> dict[str, float]:
        raise NotImplementedError

    def lr_scales(self) -> dict[str, float]:
        """Node id (or a module's path) -> the factor of the learning rate its parameters
        train at (default: what the blocks declare, every other parameter at the run's
        rate)."""
        return dict(self.declared_lr_scales)

    def close(self) -> None:
        """Remove hooks the objective put on the model."""
