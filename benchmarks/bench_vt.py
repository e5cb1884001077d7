"""vitgraph VT-ResNets vs the torchvision ResNets whose last stage they replace.

VT has no released code, so there is no reference implementation to race; the baseline
is the convolutional stage the paper replaces (Table 8: VT-R18 1.569 vs 1.814 GMACs,
VT-R50 3.412 vs 4.089). A ratio > 1 means VT runs faster than the ResNet.
Usage: python benchmarks/bench_vt.py [--device cuda] [--bf16] [--batch 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vitgraph
from benchmarks.harness import compare


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--variants", nargs="+", default=["vt_r18", "vt_r50"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for variant in args.variants:
        ours = vitgraph.load(variant).build(allow_large=True)
        reference = getattr(torchvision.models, variant.replace("vt_r", "resnet"))()
        compare(
            f"{variant} vs resnet",
            ours,
            reference,
            (3, 224, 224),
            batch=args.batch,
            repeats=args.repeats,
            device=args.device,
            autocast=torch.bfloat16 if args.bf16 else None,
        )


if __name__ == "__main__":
    main()
