"""The Image Transformer's local attention against the same attention done densely.

No runnable reference exists (tensor2tensor is TF1), so the side-by-side is with the
only other way to compute the same outputs: one dense SDPA over all N positions under
the band-and-causal mask (``dense_mask()``, the mask the tests check). Local attention
scores N x 2L (1-D) or N x memory (2-D) pairs instead of N x N; one process, the two
taking turns, median of the rounds; ratio > 1: local is faster.

Usage: python benchmarks/bench_local_attention.py [--kind 1d|2d] [--batch 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vitgraph.bench import LoadMeter, alternate, set_threads
from vitgraph.blocks.local_attention import LocalAttention1d, LocalAttention2d
from vitgraph.shapes import Tokens


def dense(module: torch.nn.Module, mask: torch.Tensor):
    """The same projections, one SDPA over the whole sequence under ``mask``."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        q, k, v = module.qkv(x).unflatten(-1, (3, module.heads, -1)).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return module.proj(out.transpose(1, 2).flatten(2))

    return forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["1d", "2d"], default="1d")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    tokens = Tokens(512, (32, 96))  # CIFAR-10: 3072 sub-pixels, width 512
    if args.kind == "1d":
        block, _ = LocalAttention1d(heads=4, block_length=256).infer(tokens)
    else:
        block, _ = LocalAttention2d(heads=4, query_shape=[8, 16], memory_flange=[8, 16]).infer(
            tokens
        )
    module = block.build(tokens).eval()
    mask = module.dense_mask()
    x = torch.randn(args.batch, tokens.length, tokens.dim)
    with torch.no_grad():
        torch.testing.assert_close(module(x), dense(module, mask)(x), rtol=0, atol=1e-4)

    def timed(fn):
        def run():
            with torch.no_grad():
                fn(x)

        return run

    with LoadMeter() as meter:
        times = alternate(
            {"local": timed(module), "dense": timed(dense(module, mask))},
            args.repeats,
            2,
            torch.device("cpu"),
        )
    local, full = statistics.median(times["local"]), statistics.median(times["dense"])
    print(
        f"{args.kind} local attention, batch {args.batch}, 3072 positions, {threads} threads: "
        f"local {1000 * local:.1f} ms, dense masked {1000 * full:.1f} ms, "
        f"ratio {full / local:.2f}; {meter.load.describe()}"
    )


if __name__ == "__main__":
    main()
