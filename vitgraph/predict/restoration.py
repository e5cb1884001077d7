"""An image restoration model's output (IPT, arXiv:2012.00364) as a PNG: the original
image (any size at least the model's input) restored tile by tile (the official
``forward_chop``), for the task the model is built for; ``vitgraph restore`` also writes
the baseline beside it and picks the task by name."""

from __future__ import annotations

import torch

from vitgraph.blocks.ipt import forward_chop
from vitgraph.predict import Prediction, renderer


@renderer("restoration")
def write_restored(p: Prediction) -> int:
    from PIL import Image

    image = p.original[None].float()  # (1, C, h, w) in [0, 255], as the model takes it
    with torch.no_grad():
        restored = forward_chop(p.model, image, tile=p.graph.input_shape[-1])
    out = p.args.out or "prediction.png"
    pixels = restored[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(out)
    (h, w), (out_h, out_w) = image.shape[-2:], restored.shape[-2:]
    print(f"restored {h}x{w} -> {out_h}x{out_w}: {out}")
    return 0
