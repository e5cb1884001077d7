"""vitgraph vs timm, Twins-SVT-S and CaiT-XXS24 (224): forward and training step, one
process, alternating runs (benchmarks/harness.py). Weights are transplanted with
``from_timm``, so both models compute the same function.

Usage: python benchmarks/bench_twins_cait.py [--device cuda] [--bf16] [--batch 8]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import bench_args, compare_timm_twins

MODELS = ["twins_svt_small", "cait_xxs24_224"]


def main() -> None:
    compare_timm_twins(bench_args(MODELS))


if __name__ == "__main__":
    main()
