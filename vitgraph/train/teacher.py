"""Teachers for distillation and token labeling: a vitgraph checkpoint (the spec is in
its metadata), a spec plus a weights file, or any timm model (``timm:<name>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitgraph.train.checkpoint import load_checkpoint, rebuild_graph


def load_teacher(teacher: str, checkpoint: str | None, classes: int, device: str) -> nn.Module:
    """An eval-mode, frozen teacher model on ``device``."""
    if teacher.startswith("timm:"):
        import timm

        model = timm.create_model(teacher[len("timm:") :], pretrained=False, num_classes=classes)
        if checkpoint:
            model.load_state_dict(load_checkpoint(checkpoint).model)
    elif teacher.endswith(".safetensors") and Path(teacher).is_file() and not checkpoint:
        ckpt = load_checkpoint(teacher)
        model = rebuild_graph(ckpt.meta).build()
        model.load_state_dict(ckpt.model)
    else:
        from vitgraph.pipeline import load

        if not checkpoint:
            raise ValueError(
                f"teacher {teacher} needs --teacher-checkpoint (its weights); a "
                "randomly initialised teacher teaches nothing"
            )
        model = load(teacher, overrides={"classes": classes}).build()
        model.load_state_dict(load_checkpoint(checkpoint).model)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def teacher_logits(teacher: nn.Module, images: torch.Tensor) -> torch.Tensor:
    out = teacher(images)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def dense_targets(teacher: nn.Module, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Token labels ``(B, rows*cols, C)``: the teacher's per-patch class probabilities
    (LV-ViT §3.1 uses a dense score map from a pre-trained annotator), resampled to the
    student's grid. A vitgraph teacher with a token-label head gives its token logits; any
    other teacher applies its class head to each of its final patch tokens."""
    token_logits = _token_logits(teacher, images)
    probs = token_logits.softmax(-1)
    n = probs.shape[1]
    side = int(round(n**0.5))
    if (side, side) != tuple(grid) and side * side == n:
        maps = probs.transpose(1, 2).unflatten(2, (side, side))  # (B, C, h, w)
        probs = F.adaptive_avg_pool2d(maps, grid).flatten(2).transpose(1, 2)
    return probs


def _token_logits(teacher: Any, images: torch.Tensor) -> torch.Tensor:
    """Per-patch logits of any teacher (a vitgraph model, a timm model, ...)."""
    heads = [m for m in teacher.modules() if hasattr(m, "dense_output")]
    if heads:
        for head in heads:
            head.dense_output = True
        try:
            return teacher(images)[1]
        finally:
            for head in heads:
                head.dense_output = False
    graph = getattr(teacher, "vitgraph_graph", None)
    if graph is not None:
        from vitgraph.train.taps import Taps

        taps = Taps(graph, teacher)
        try:
            teacher(images)
            return taps.classify_patches()
        finally:
            taps.remove()
    if hasattr(teacher, "forward_features") and hasattr(teacher, "get_classifier"):
        tokens = teacher.forward_features(images)  # timm: (B, prefix + N, D), normed
        prefix = getattr(teacher, "num_prefix_tokens", 1)
        return teacher.get_classifier()(tokens[:, prefix:])
    raise ValueError(f"cannot read per-patch predictions from a {type(teacher).__name__} teacher")
