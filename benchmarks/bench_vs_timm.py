"""vitgraph vs timm, ViT-S/16 (and DeiT-Ti distilled): forward and training step, batch 8.

Usage: python benchmarks/bench_vs_timm.py [--device cuda] [--bf16] [--repeats 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import bench_args, compare_timm_twins

MODELS = ["vit_small_patch16_224", "deit_tiny_distilled_patch16_224"]


def main() -> None:
    compare_timm_twins(bench_args(MODELS))


if __name__ == "__main__":
    main()
