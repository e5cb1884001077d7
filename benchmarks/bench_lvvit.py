"""vitgraph vs the official tlt package, LV-ViT-S: forward and training step.

Both models return only their class logits in the training step (tlt's MixToken off), so
the harness's cross-entropy step is the same work for both.

Usage: python benchmarks/bench_lvvit.py [--device cuda] [--bf16] [--batch 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vitgraph
from benchmarks.harness import compare


class ClassLogits(nn.Module):
    """Training output -> class logits (LV-ViT trains with extra token logits)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, tuple) else out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from tlt.models.lvvit import lvvit_s

        torch.manual_seed(0)
        reference = lvvit_s()
    reference.mix_token = False
    ours = vitgraph.build("lv_vit_s", overrides={"drop_path_rate": 0.0})
    ours.load_state_dict(reference.state_dict())
    compare(
        "lv_vit_s",
        ClassLogits(ours),
        ClassLogits(reference),
        (3, 224, 224),
        batch=args.batch,
        repeats=args.repeats,
        device=args.device,
        autocast=torch.bfloat16 if args.bf16 else None,
    )


if __name__ == "__main__":
    main()
