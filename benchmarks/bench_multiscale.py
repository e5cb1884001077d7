"""vitgraph vs its references for the multi-scale family: Swin-T and CrossViT-9 against
timm, PVT-Tiny against HuggingFace transformers. Forward and training step, one process,
alternating runs (benchmarks/harness.py). Ours carries the reference's weights.

Usage: python benchmarks/bench_multiscale.py [--device cuda] [--bf16] [--batch 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vitgraph
from benchmarks.harness import compare

MODELS = ["swin_t", "crossvit_9", "pvt_tiny"]


class _HFLogits(nn.Module):
    """HF models return an output object; the harness wants the logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def pair(name: str) -> tuple[nn.Module, nn.Module, tuple[int, int, int]]:
    """(ours, reference, input shape) with the same weights."""
    if name == "pvt_tiny":
        import transformers

        from vitgraph.interop.hf_pvt import from_transformers_pvt

        reference = transformers.PvtForImageClassification(transformers.PvtConfig())
        return from_transformers_pvt(reference), _HFLogits(reference), (3, 224, 224)
    import timm

    timm_name = {"swin_t": "swin_tiny_patch4_window7_224", "crossvit_9": "crossvit_9_240"}[name]
    reference = timm.create_model(timm_name, pretrained=False)
    return vitgraph.from_timm(reference), reference, tuple(reference.pretrained_cfg["input_size"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=MODELS)
    args = parser.parse_args()
    torch.manual_seed(0)
    for name in args.models:
        ours, reference, shape = pair(name)
        compare(
            name,
            ours,
            reference,
            shape,
            batch=args.batch,
            repeats=args.repeats,
            iters=args.iters,
            device=args.device,
            autocast=torch.bfloat16 if args.bf16 else None,
        )


if __name__ == "__main__":
    main()
