"""What one rank holds under DDP and under FSDP: parameter, gradient and optimizer-state
bytes after one AdamW step, and the process's peak resident memory, for N gloo processes
on the CPU (the arithmetic is the same on GPUs: FSDP keeps 1/N of each, plus one unit's
gathered weights at a time).

Usage: python benchmarks/bench_fsdp.py [--spec igpt_m] [--set positions=256] [--nproc 2]
(it starts ``torchrun`` once per strategy; ``--inner`` is the per-rank side).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _bytes(tensors) -> int:
    total = 0
    for t in tensors:
        local = t.to_local() if hasattr(t, "to_local") else t
        total += local.numel() * local.element_size()
    return total


def inner(args: argparse.Namespace) -> None:
    import vitgraph
    from vitgraph.spec.overrides import parse_sets
    from vitgraph.train import ddp, fsdp

    torch.set_num_threads(1)
    world = ddp.setup("cpu")
    graph = vitgraph.load(args.spec, overrides=parse_sets(args.sets) or None)
    torch.manual_seed(0)
    model = graph.build()
    model.set_grad_checkpointing(args.checkpointing)
    if args.strategy == "fsdp":
        fsdp.shard(model, world, "cpu")
        wrapped = model
    else:
        wrapped = ddp.wrap(model, world, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = graph.example_input(batch=args.batch, seed=world.rank)
    out = wrapped(batch)
    out.float().square().mean().backward()
    optimizer.step()
    row = {
        "strategy": args.strategy,
        "rank": world.rank,
        "params": _bytes(model.parameters()),
        "grads": _bytes(p.grad for p in model.parameters() if p.grad is not None),
        "optimizer": _bytes(
            v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)
        ),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if world.main:
        Path(args.out).write_text(json.dumps(row), encoding="utf-8")
    ddp.teardown(world)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="igpt_m")
    parser.add_argument("--set", dest="sets", action="append", help="default positions=256")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2, help="global batch")
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", default="ddp", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sets = args.sets or ["positions=256"]
    if args.inner:
        args.batch //= int(os.environ.get("WORLD_SIZE", "1"))
        return inner(args)
    rows = []
    for strategy in ("ddp", "fsdp"):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "row.json"
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={args.nproc}",
                __file__,
                "--inner",
                f"--strategy={strategy}",
                f"--spec={args.spec}",
                f"--batch={args.batch}",
                f"--out={out}",
                *[f"--set={s}" for s in args.sets],
                *(["--checkpointing"] if args.checkpointing else []),
            ]
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            subprocess.run(command, check=True, env=env, capture_output=True)
            rows.append(json.loads(out.read_text()))
    print(f"{args.spec} {' '.join(args.sets)}, {args.nproc} gloo processes, rank 0 after one step")
    print(f"{'':6} {'params':>10} {'grads':>10} {'optimizer':>10} {'peak RSS':>10}  (MB)")
    for row in rows:
        cells = [row[k] / 2**20 for k in ("params", "grads", "optimizer", "peak_rss")]
        print(f"{row['strategy']:6} " + " ".join(f"{c:10.1f}" for c in cells))


if __name__ == "__main__":
    main()
