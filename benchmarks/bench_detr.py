"""DETR vs HF ``DetrForObjectDetection`` with the same weights, in one process: forward
(inference mode) and training step (forward, DETR's set loss with its auxiliary layers,
backward, SGD step) images/s, measured alternately, median of ``--repeats`` rounds. A
ratio > 1 means vitgraph is faster. HF's training step computes its own loss (labels
given, ``auxiliary_loss`` on, as the official recipe); ours ``set_criterion`` on the same
targets. The forward also runs ``vitgraph.optimize(ours)``, vitgraph's inference path
(identities dropped, channels-last convolutions; outputs equal within 1e-6).

Usage: python benchmarks/bench_detr.py [--size 320] [--batch 2] [--threads 2]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--backbone", default="resnet50")
    args = parser.parse_args()
    set_threads(args.threads)
    from transformers import DetrConfig, DetrForObjectDetection

    torch.manual_seed(0)
    reference = DetrForObjectDetection(
        DetrConfig(backbone=args.backbone, num_labels=91, dropout=0.0)
    )
    ours = vitgraph.from_hf(reference)
    # the same trainable parameters in both (HF 5.25 with timm's ResNet freezes none)
    for name, param in reference.named_parameters():
        if not param.requires_grad:
            raise SystemExit(f"HF froze {name}: freeze the same in ours first")
    x = torch.randn(args.batch, 3, args.size, args.size)
    gen = torch.Generator().manual_seed(0)
    truth = targets(args.batch, gen)
    runners = Runners(x, truth, focal=False)

    optimized = vitgraph.optimize(ours.eval())
    with LoadMeter() as meter:
        for mode, make in (("forward", runners.forward), ("train", runners.train)):
            runs = {"ours": make(ours, False), "hf": make(reference, True)}
            if mode == "forward":
                runs["optimized"] = make(optimized, False)
            times = alternate(runs, args.repeats, args.iters, torch.device("cpu"))
            ips = {name: args.batch / statistics.median(t) for name, t in times.items()}
            line = (
                f"{mode:8s} {args.size}px batch {args.batch}: ours {ips['ours']:.2f} img/s, "
                f"HF {ips['hf']:.2f} img/s (x{ips['ours'] / ips['hf']:.3f})"
            )
            if "optimized" in ips:
                line += (
                    f"; vitgraph.optimize {ips['optimized']:.2f} img/s "
                    f"(x{ips['optimized'] / ips['hf']:.3f})"
                )
            print(line, flush=True)
    print(f"[{meter.load.describe()}]")


if __name__ == "__main__":
    main()
