"""A detector's prediction drawn on the image: each box whose most likely real class is
at least ``--threshold`` probable, with its label and score (DETR §3.1's post-processing,
``vitgraph.train.coco_eval.detections``; Deformable DETR's per-class sigmoids: each
(query, class) pair), written as a PNG."""

from __future__ import annotations

import torch

from vitgraph.predict import Prediction, renderer
from vitgraph.shapes import Detections
from vitgraph.train.coco_eval import detections

_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6"]


@renderer("detection")
def draw_boxes(p: Prediction) -> int:
    from PIL import Image, ImageDraw

    with torch.no_grad():
        logits, boxes = p.model(p.image, p.mask)[:2]
    height, width = p.original.shape[-2:]
    types = [p.graph.type_of(node.id) for node in p.graph.nodes]
    sigmoid = any(isinstance(t, Detections) and t.sigmoid for t in types)  # Deformable DETR
    scores, labels, xywh = detections(logits[0].float(), boxes[0].float(), width, height, sigmoid)
    names = p.args.labels.split(",") if p.args.labels else None
    picture = Image.fromarray(p.original.permute(1, 2, 0).numpy()).convert("RGB")
    draw = ImageDraw.Draw(picture)
    kept = 0
    found = zip(scores.tolist(), labels.tolist(), xywh.tolist(), strict=True)
    for score, label, (x, y, w, h) in found:
        if score < p.args.threshold:
            continue
        kept += 1
        colour = _COLOURS[label % len(_COLOURS)]
        name = names[label] if names and label < len(names) else str(label)
        draw.rectangle([x, y, x + w, y + h], outline=colour, width=max(1, width // 200))
        draw.text((x + 2, y + 1), f"{name} {score:.2f}", fill=colour)
        print(f"{name:>12}  {score:.3f}  box x {x:.1f} y {y:.1f} w {w:.1f} h {h:.1f}")
    out = p.args.out or "prediction.png"
    picture.save(out)
    print(f"{kept} box(es) at probability >= {p.args.threshold} drawn on {out}")
    return 0
