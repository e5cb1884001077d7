"""A classifier's prediction: the five most likely classes with their probabilities, the
image prepared as timm prepares it for evaluation (``vitgraph.train.evaluate``: resize,
centre crop, the spec's mean and std). Class names come from ``--labels``, else, for a
1000-class head, ImageNet-1k's (timm's ``ImageNetInfo``, offline, through the ``timm``
extra), else the class index."""

from __future__ import annotations

import sys

import torch

from vitgraph.predict import Prediction, renderer


def imagenet_names() -> list[str] | None:
    """ImageNet-1k's class descriptions in label order, or None without timm."""
    try:
        from timm.data import ImageNetInfo
    except ImportError:
        print(
            "note: ImageNet class names need timm: pip install 'vitgraph[timm]'",
            file=sys.stderr,
        )
        return None
    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(info.num_classes())]


@renderer("classification")
def top5(p: Prediction) -> int:
    from PIL import Image

    from vitgraph.train.evaluate import transform_for

    with Image.open(p.args.image) as image:
        prepared = transform_for(p.model)(image)[None]
    with torch.no_grad():
        out = p.model(prepared)
    logits = out[0] if isinstance(out, tuple) else out
    probs = logits.float().softmax(-1)[0]
    names = p.args.labels.split(",") if p.args.labels else None
    if names is None and probs.numel() == 1000:
        names = imagenet_names()
    values, indices = probs.topk(min(5, probs.numel()))
    for value, index in zip(values.tolist(), indices.tolist(), strict=True):
        name = names[index] if names and index < len(names) else str(index)
        print(f"{value:.4f}  {name}")
    return 0
