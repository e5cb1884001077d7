"""vitgraph PiT-S vs timm ``pit_s_224``: forward and training step, one process.

Ours is the ``pit_s`` spec with timm's weights (``from_timm``), so both compute the same
function. Usage: python benchmarks/bench_pit.py [--device cuda] [--bf16] [--batch 8]
"""

from __future__ import annotations

import sys
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vitgraph
from benchmarks.harness import bench_args, compare


def main() -> None:
    args = bench_args()
    reference = timm.create_model("pit_s_224", pretrained=False)
    ours = vitgraph.from_timm(reference)
    assert sum(p.numel() for p in ours.parameters()) == vitgraph.load("pit_s").summary().params
    compare(
        "pit_s_224",
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
