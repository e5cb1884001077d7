"""Peak memory of a training step, vitgraph vs timm, for every spec with a timm twin.

Ours is built by ``from_timm`` from the timm model (same architecture, same weights), so
both sides run the same function; the counter is ``harness.PeakMemory`` (live tensor bytes
at the dispatcher: parameters, activations, gradients), the same for both, on any device.
Target: ratio <= 1.0. With ``--device cuda`` the CUDA allocator's peak is printed too.

Usage: python benchmarks/bench_memory.py [--batch 8] [--device cpu] [--models vit_s_16 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vitgraph
from benchmarks.harness import compare_memory, train_step_peak_bytes

#: vitgraph variant -> its timm twin
TWINS = {
    "vit_s_16": "vit_small_patch16_224",
    "deit_s": "deit_small_patch16_224",
    "pit_s": "pit_s_224",
    "twins_svt_s": "twins_svt_small",
    "cait_xxs24": "cait_xxs24_224",
    "swin_t": "swin_tiny_patch4_window7_224",
    "levit_128s": "levit_128s",
    "deit_ti_distilled": "deit_tiny_distilled_patch16_224",
    "crossvit_9": "crossvit_9_240",
    "botnet26t_256": "botnet26t_256",
}


def cuda_peak(model: torch.nn.Module, shape: tuple[int, ...], batch: int) -> int:
    """The CUDA allocator's own peak over one training step (a cross-check)."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    train_step_peak_bytes(model, shape, batch, device="cuda")
    return torch.cuda.max_memory_allocated()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--models", nargs="*", default=list(TWINS))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # a shared CPU: the counter does not depend on threads
    results = {}
    for variant in args.models:
        reference = timm.create_model(TWINS[variant], pretrained=False)
        ours = vitgraph.from_timm(reference)
        assert (
            sum(p.numel() for p in ours.parameters()) == vitgraph.load(variant).summary().params
        ), f"{variant}: from_timm is not the shipped variant"
        shape = tuple(reference.pretrained_cfg["input_size"])
        row = compare_memory(
            f"{variant} ({TWINS[variant]})", ours, reference, shape, args.batch, device=args.device
        )
        if args.device.startswith("cuda"):
            row["cuda_peak_ours"] = cuda_peak(ours, shape, args.batch)
            row["cuda_peak_ref"] = cuda_peak(reference, shape, args.batch)
            print(
                f"{'':28s} cuda allocator peak {row['cuda_peak_ours'] / 2**20:8.1f} vs "
                f"{row['cuda_peak_ref'] / 2**20:8.1f} MiB "
                f"(x{row['cuda_peak_ours'] / row['cuda_peak_ref']:.3f})",
                flush=True,
            )
        results[variant] = row
        del ours, reference
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
