"""Deformable DETR vs HF ``DeformableDetrForObjectDetection`` with the same weights, in
one process: forward (inference mode) and training step (forward, the focal set loss with
its auxiliary layers, backward, SGD step) images/s, measured alternately, median of
``--repeats`` rounds. A ratio > 1 means vitgraph is faster. HF's training step computes
its own loss (labels given); ours ``set_criterion(..., focal=True)`` on the same targets
(HF adds no two-stage proposal loss; ours does, so ``--variant two_stage`` trains more).
Both run the pure PyTorch ``grid_sample`` path. HF 5.25 freezes its whole native
ResNet-50 (its filter looks for ``stage.1`` in names that read ``stages.1``): ours freezes
the same backbone, so both train the same 16,614,753 parameters.

Usage: python benchmarks/bench_deformable_detr.py [--variant multi_scale|refine|two_stage]
       [--size 320] [--batch 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vitgraph
from benchmarks.detection import Runners, targets
from vitgraph.bench import LoadMeter, alternate, set_threads

VARIANTS = {
    "multi_scale": {},
    "refine": {"with_box_refine": True},
    "two_stage": {"with_box_refine": True, "two_stage": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=list(VARIANTS), default="multi_scale")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection, ResNetConfig

    torch.manual_seed(0)
    backbone = ResNetConfig(out_features=["stage2", "stage3", "stage4"])
    config = DeformableDetrConfig(
        backbone_config=backbone,
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        num_labels=91,
        dropout=0.0,
        **VARIANTS[args.variant],
    )
    reference = DeformableDetrForObjectDetection(config)
    ours = vitgraph.from_hf(reference)
    frozen = {n for n, p in reference.named_parameters() if not p.requires_grad}
    # HF freezes its whole native ResNet: ours the same
    for name, param in ours.named_parameters():
        if name.startswith(("backbone.", "layer1.", "layer2.", "layer3.", "layer4.")):
            param.requires_grad_(False)
    trainable = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    theirs = sum(p.numel() for p in reference.parameters() if p.requires_grad)
    if trainable != theirs:
        raise SystemExit(
            f"trainable parameters differ: ours {trainable:,}, HF {theirs:,} "
            f"(HF froze {len(frozen)} tensors)"
        )
    x = torch.randn(args.batch, 3, args.size, args.size)
    gen = torch.Generator().manual_seed(0)
    truth = targets(args.batch, gen)
    runners = Runners(x, truth, focal=True)

    with LoadMeter() as meter:
        for mode, make in (("forward", runners.forward), ("train", runners.train)):
            runs = {"ours": make(ours, False), "hf": make(reference, True)}
            times = alternate(runs, args.repeats, args.iters, torch.device("cpu"))
            ips = {name: args.batch / statistics.median(t) for name, t in times.items()}
            print(
                f"{args.variant} {mode:8s} {args.size}px batch {args.batch}: "
                f"ours {ips['ours']:.2f} img/s, HF {ips['hf']:.2f} img/s "
                f"(x{ips['ours'] / ips['hf']:.3f})",
                flush=True,
            )
    print(f"[{meter.load.describe()}]")


if __name__ == "__main__":
    main()
