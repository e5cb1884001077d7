"""vitgraph vs its references for the convolution family: LeViT-128S vs timm (through
``from_timm``), CvT-13 vs HuggingFace ``CvtForImageClassification``, and BoTNet-26t vs
timm. Forward and training step, one process, alternating rounds.

Usage: python benchmarks/bench_conv.py [--device cuda] [--bf16] [--batch 8] [--repeats 5]
       [--threads 1] [--models levit_128s cvt_13]

CPU numbers use ``--threads`` intra-op threads (default 1: on a shared machine more threads
measure the neighbours as much as the models).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import timm
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vitgraph
from benchmarks.harness import compare


class HFLogits(nn.Module):
    """HF's model returning a plain logits tensor, as the harness expects."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def levit(args: argparse.Namespace) -> tuple[nn.Module, nn.Module, tuple[int, ...]]:
    reference = timm.create_model("levit_128s", pretrained=False)
    return vitgraph.from_timm(reference), reference, (3, 224, 224)


def cvt(args: argparse.Namespace) -> tuple[nn.Module, nn.Module, tuple[int, ...]]:
    from transformers import CvtConfig, CvtForImageClassification

    reference = HFLogits(CvtForImageClassification(CvtConfig(num_labels=1000)))
    return vitgraph.build("cvt_13"), reference, (3, 224, 224)


def botnet(args: argparse.Namespace) -> tuple[nn.Module, nn.Module, tuple[int, ...]]:
    reference = timm.create_model("botnet26t_256", pretrained=False)
    return vitgraph.from_timm(reference), reference, (3, 256, 256)


MODELS = {"levit_128s": levit, "cvt_13": cvt, "botnet26t_256": botnet}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.models:
        ours, reference, shape = MODELS[name](args)
        compare(
            name,
            ours,
            reference,
            shape,
            batch=args.batch,
            repeats=args.repeats,
            device=args.device,
            autocast=torch.bfloat16 if args.bf16 else None,
        )


if __name__ == "__main__":
    main()
