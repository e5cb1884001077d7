"""Time per sampled token as the prefix grows, with and without the KV cache.

With the cache (``vitgraph.sampling``, each module keeps what earlier positions gave
it), the cost of a token should stay flat as the prefix grows; without it, every token
recomputes the whole prefix, so the cost grows with it. One process, explicit threads;
the ratio of the last to the first window of positions is the number to read.

Usage: python benchmarks/bench_sampling.py [--variant igpt_s] [--depth 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vitgraph
from vitgraph.sampling import decoding


def per_token_ms(model: torch.nn.Module, length: int, cache: bool, window: int) -> list[float]:
    """Milliseconds per token, averaged over windows of ``window`` positions."""
    ids = torch.zeros(1, length, dtype=torch.int64)
    times = []
    with torch.no_grad():
        if cache:
            with decoding(model):
                model(ids[:, :0])
                for position in range(1, length):
                    start = time.perf_counter()
                    model(ids[:, position - 1 : position])
                    times.append(time.perf_counter() - start)
        else:
            for position in range(1, length):
                start = time.perf_counter()
                model(ids[:, : position + 1])
                times.append(time.perf_counter() - start)
    return [
        1000 * sum(times[k : k + window]) / window
        for k in range(0, len(times) - window + 1, window)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="igpt_s")
    parser.add_argument("--depth", type=int, default=4, help="layers (the full model: 24)")
    parser.add_argument("--positions", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    graph = vitgraph.load(
        args.variant, overrides={"depth": args.depth, "positions": args.positions}
    )
    model = graph.build().eval()
    window = args.positions // 8
    for cache in (True, False):
        ms = per_token_ms(model, args.positions, cache, window)
        label = "cache   " if cache else "no cache"
        cells = "  ".join(f"{m:6.2f}" for m in ms)
        print(
            f"{label}: ms/token per {window} positions: {cells}  (last/first x{ms[-1] / ms[0]:.2f})"
        )


if __name__ == "__main__":
    main()
