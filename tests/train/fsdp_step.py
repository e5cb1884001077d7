"""Run by ``torchrun --nproc_per_node=2 -m tests.train.fsdp_step OUT.json [VARIANT ...]``
(tests/train/test_fsdp.py): for each variant's reduced config, one process's gradient of
a global batch of 4 next to the FSDP-sharded gradient of the same batch split over the
ranks (2 each), with activation checkpointing per unit. Writes the worst differences.

Eval mode: BatchNorm's batch statistics are per rank under data parallelism (no
SyncBatchNorm), so a training-mode BatchNorm would differ by design, not by sharding;
in eval mode every family's gradient must be the same arithmetic."""

import copy
import json
import sys

import torch
import torch.distributed as dist

import vitgraph
from tests.families import FAMILIES
from vitgraph.train import ddp, fsdp


def _scalar(out) -> torch.Tensor:
    """A mean over the batch (so the mean of the ranks' halves is the whole batch's) of
    every output, squared and projected on a fixed random direction (a zero-initialised
    head still passes a gradient back through the projection)."""
    outs = out if isinstance(out, tuple | list) else (out,)
    total = torch.zeros(())
    for o in outs:
        r = torch.randn(o.shape[1:], generator=torch.Generator().manual_seed(2))
        total = total + o.float().square().mean() + (o.float() * r).mean()
    return total


def _compare(name: str, overrides: dict, world) -> dict:
    """One variant's losses and gradients, one process vs sharded. Its models die with
    this call, before the process group does (see vitgraph.train.ddp.teardown)."""
    torch.manual_seed(0)
    graph = vitgraph.load(name, overrides=overrides)
    one = graph.build().eval()
    model = copy.deepcopy(one)
    batch = graph.example_input(batch=4, seed=1)
    loss_one = _scalar(one(batch))
    loss_one.backward()
    model.set_grad_checkpointing(True)
    fsdp.shard(model, world, "cpu")
    half = batch[2 * world.rank : 2 * world.rank + 2]
    loss = _scalar(model(half))
    loss.backward()
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    grads = {n: p.grad.full_tensor() for n, p in model.named_parameters() if p.grad is not None}
    ref = {n: p.grad for n, p in one.named_parameters() if p.grad is not None}
    assert grads.keys() == ref.keys(), sorted(set(grads) ^ set(ref))
    return {
        "loss": abs(mean_loss.item() / world.size - loss_one.item()),
        "grad": max((grads[n] - ref[n]).abs().max().item() for n in ref),
        "grad_scale": max(ref[n].abs().max().item() for n in ref),
        "units": len(fsdp.unit_leaves(one)),
    }


def main() -> None:
    torch.set_num_threads(1)
    world = ddp.setup("cpu")
    names = sys.argv[2:] or [f.variants[0] for f in FAMILIES.values()]
    small = {v: f.small.overrides_for(v) for f in FAMILIES.values() for v in f.variants}
    report = {name: _compare(name, small[name], world) for name in names}
    if world.main:
        with open(sys.argv[1], "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    ddp.teardown(world)


if __name__ == "__main__":
    main()
