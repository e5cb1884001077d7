"""COCO mAP of a detector's predictions by the official evaluator (pycocotools'
``COCOeval``, the ``detection`` extra): DETR's post-processing (§3.1: each query's most
likely real class and its probability, the box scaled to the image's pixels), then
AP averaged over IoU 0.5:0.95 and AP at IoU 0.5."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import torch

INSTALL = "pip install 'vitgraph[detection]'"


def detections(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    width: int,
    height: int,
    sigmoid: bool = False,
    top: int = 100,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's (scores, labels, xywh boxes in pixels) from its (Q, C+1) logits and
    (Q, 4) normalised cx, cy, w, h boxes; "no object" is never a label. ``sigmoid``: (Q, C)
    per-class logits (Deformable DETR): the ``top`` (query, class) pairs by probability,
    a query may give several (official ``PostProcess``)."""
    if sigmoid:
        prob = logits.sigmoid().flatten()
        scores, index = prob.topk(min(top, prob.numel()))
        labels, queries = index % logits.shape[-1], index // logits.shape[-1]
        boxes = boxes[queries]
    else:
        scores, labels = logits.softmax(-1)[:, :-1].max(-1)
    cx, cy, w, h = boxes.unbind(-1)
    xywh = torch.stack(((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height), -1)
    return scores, labels, xywh


def coco_map(
    split: Any, predictions: list[tuple[torch.Tensor, torch.Tensor]], sigmoid: bool = False
) -> dict[str, float]:
    """``val_map`` (AP@[.5:.95]) and ``val_map50`` (AP@.5) of per-image (logits, boxes)
    over a ``DetectionSplit``'s ground truth (``sigmoid``: per-class sigmoid logits)."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise ImportError(f"COCO mAP needs pycocotools: {INSTALL}") from exc
    results = []
    for info, (logits, boxes) in zip(split.coco["images"], predictions, strict=True):
        scores, labels, xywh = detections(logits, boxes, info["width"], info["height"], sigmoid)
        for score, label, box in zip(scores.tolist(), labels.tolist(), xywh.tolist(), strict=True):
            results.append(
                {
                    "image_id": info["id"],
                    "category_id": split.category_ids[label],
                    "bbox": box,
                    "score": score,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        truth = COCO()
        truth.dataset = {k: list(v) for k, v in split.coco.items()}
        truth.createIndex()
        if not results:
            return {"val_map": 0.0, "val_map50": 0.0}
        found = truth.loadRes(results)
        evaluator = COCOeval(truth, found, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {
        "val_map": float(max(evaluator.stats[0], 0.0)),
        "val_map50": float(max(evaluator.stats[1], 0.0)),
    }
