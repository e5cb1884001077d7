"""A classifier's prediction: the five most likely classes with their probabilities."""

from __future__ import annotations

import torch

from vitgraph.predict import Prediction, renderer


@renderer("classification")
def top5(p: Prediction) -> int:
    with torch.no_grad():
        out = p.model(p.image)
    logits = out[0] if isinstance(out, tuple) else out
    probs = logits.float().softmax(-1)[0]
    names = p.args.labels.split(",") if p.args.labels else None
    values, indices = probs.topk(min(5, probs.numel()))
    for value, index in zip(values.tolist(), indices.tolist(), strict=True):
        name = names[index] if names and index < len(names) else str(index)
        print(f"{name:>20}  {value:.4f}")
    return 0
