"""vitgraph vs timm on the modern ViTs (#23): DINOv2-S/14 with registers (qk-free,
LayerScale, 4 registers), SigLIP B/16 (MAP head), OpenAI CLIP B/16 (pre-norm,
quick-GELU), Swin v2-T (cosine window attention, continuous position bias), EVA-02-Ti
(RoPE, SwiGLU) and the relative-position ViT-S (a bias MLP in every attention), each
with a 1000-class head: forward and training step, side by side in one process.

Usage: python benchmarks/bench_modern_vit.py [--device cuda] [--bf16] [--batch 8]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import torch

from benchmarks.harness import bench_args, compare

MODELS = [
    "vit_small_patch14_reg4_dinov2",
    "vit_base_patch16_siglip_224",
    "vit_base_patch16_clip_quickgelu_224",
    "swinv2_tiny_window8_256",
    "eva02_tiny_patch14_224",
    "vit_relpos_small_patch16_224",
]


def main() -> None:
    import timm

    import vitgraph

    args = bench_args(MODELS)
    for name in args.models:
        # the pretrained towers have no classifier: the 1000-class model, as the specs
        reference = timm.create_model(name, pretrained=False, num_classes=1000)
        ours = vitgraph.from_timm(reference)
        compare(
            name,
            ours,
            reference,
            (3, *_image_size(reference)),
            batch=args.batch,
            repeats=args.repeats,
            device=args.device,
            autocast=torch.bfloat16 if args.bf16 else None,
        )


def _image_size(model: torch.nn.Module) -> tuple[int, int]:
    return tuple(model.pretrained_cfg["input_size"][1:])  # type: ignore[return-value]


if __name__ == "__main__":
    main()
