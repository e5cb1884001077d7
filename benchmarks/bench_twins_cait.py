"""vitgraph vs timm, Twins-SVT-S and CaiT-XXS24 (224): forward and training step, one
process, alternating runs (benchmarks/harness.py). Weights are transplanted with
``from_timm``, so both models compute the same function.

Usage: python benchmarks/bench_twins_cait.py [--device cuda] [--bf16] [--batch 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vitgraph  # noqa: E402
from benchmarks.harness import compare  # noqa: E402

MODELS = ["twins_svt_small", "cait_xxs24_224"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--models", nargs="*", default=MODELS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.models:
        reference = timm.create_model(name, pretrained=False)
        ours = vitgraph.from_timm(reference)
        compare(name, ours, reference, (3, 224, 224), batch=args.batch, repeats=args.repeats,
                device=args.device, autocast=torch.bfloat16 if args.bf16 else None)


if __name__ == "__main__":
    main()
