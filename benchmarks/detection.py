"""What the detection benchmarks share (bench_detr.py, bench_deformable_detr.py): random
targets, and the forward and training-step runners of ours and of HF's model on them."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vitgraph.train.objectives.detection import set_criterion


def targets(batch: int, gen: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """Three random boxes (normalised cx, cy, w, h inside the image) of COCO ids per image."""
    out = []
    for _ in range(batch):
        wh = torch.rand(3, 2, generator=gen) * 0.3 + 0.1
        centre = wh / 2 + torch.rand(3, 2, generator=gen) * (1 - wh)
        labels = torch.randint(0, 91, (3,), generator=gen)
        out.append({"labels": labels, "boxes": torch.cat([centre, wh], 1)})
    return out


class Runners:
    """``forward(model, hf)`` and ``train(model, hf)`` make the timed callables: inference
    mode, or forward + set loss with the auxiliary layers + backward + an SGD step. HF
    computes its own loss from labels; ours ``set_criterion`` (``focal`` for Deformable
    DETR) on the same targets."""

    def __init__(self, x: torch.Tensor, truth: list[dict[str, torch.Tensor]], focal: bool):
        self.x, self.truth, self.focal = x, truth, focal
        self.labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in truth]

    def forward(self, model: nn.Module, hf: bool) -> Callable[[], object]:
        def run() -> object:
            model.eval()
            with torch.inference_mode():
                return model(pixel_values=self.x) if hf else model(self.x)

        return run

    def train(self, model: nn.Module, hf: bool) -> Callable[[], None]:
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-6)

        def run() -> None:
            model.train()
            if hf:
                model.config.auxiliary_loss = True
                loss = model(pixel_values=self.x, labels=self.labels).loss
            else:
                loss, _ = set_criterion(model(self.x), self.truth, focal=self.focal)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return run
