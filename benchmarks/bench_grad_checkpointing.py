"""Activation checkpointing: peak memory and training-step time of a ViT with
``set_grad_checkpointing`` off and on, ours (from the spec) and timm's, and ours'
``forward_features`` + ``forward_head`` against ``forward``. On CPU each configuration
runs in a fresh process and the peak is its max RSS (DESIGN.md); on CUDA, the allocator's.

    python -m benchmarks.bench_grad_checkpointing --variant vit_s_16 --batch 16
    python -m benchmarks.bench_grad_checkpointing --device cuda --batch 64
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import vitgraph


def step_stats(model, x, target, repeats: int) -> tuple[float, float, float]:
    """(peak MiB above the weights, median seconds per step, loss)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step() -> float:
        out = model(x)
        loss = F.cross_entropy(out, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    step()  # warm-up (and SGD state)
    cuda = x.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    peak = (
        (torch.cuda.max_memory_allocated() - base) / 2**20
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    )
    return peak, statistics.median(times), loss


TIMM = {"vit_s_16": "vit_small_patch16_224", "vit_b_16": "vit_base_patch16_224"}


def run_one(args: argparse.Namespace, name: str, enable: bool) -> None:
    import timm

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224, device=device)
    target = torch.randint(0, 1000, (args.batch,), device=device)
    reference = timm.create_model(TIMM[args.variant], pretrained=False)
    model = reference
    if name == "vitgraph":
        model = vitgraph.load(args.variant).build()
        model.load_state_dict(reference.state_dict())
        del reference
    model = model.to(device).train()
    model.set_grad_checkpointing(enable)
    peak, seconds, loss = step_stats(model, x, target, args.repeats)
    print(
        f"{name:8s} checkpointing={enable!s:5s} peak {peak:8.0f} MiB  "
        f"step {seconds * 1e3:7.1f} ms  loss {loss:.6f}",
        flush=True,
    )
    if name == "vitgraph" and not enable:
        model.eval()
        with torch.inference_mode():
            split = model.forward_head(model.forward_features(x))
            print(
                f"forward_head(forward_features(x)) vs forward(x): max |d| "
                f"{(model(x) - split).abs().max().item():.2e}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", default="vit_b_16", choices=sorted(TIMM))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", nargs=2, metavar=("NAME", "ENABLE"))
    args = parser.parse_args()
    if args.one:
        run_one(args, args.one[0], args.one[1] == "on")
        return
    for name in ("vitgraph", "timm"):
        for enable in ("off", "on"):
            if args.device == "cpu":  # a fresh process per peak RSS
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.bench_grad_checkpointing",
                        *sys.argv[1:],
                        "--one",
                        name,
                        enable,
                    ],
                    check=True,
                )
            else:
                run_one(args, name, enable == "on")


if __name__ == "__main__":
    main()
