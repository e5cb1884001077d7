"""Data-parallel training on PyTorch's own engine: under ``torchrun`` the loop wraps the
model in ``DistributedDataParallel`` (gloo on CPU, NCCL on CUDA). Each rank takes an
equal, disjoint slice of every global batch, so the averaged gradient equals the
one-process gradient of the same global batch."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def setup(device: str) -> World:
    """Join the process group that ``torchrun`` describes in the environment (no-op when
    started as one plain process)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend)
    return world


def device_for(device: str, world: World) -> str:
    """``cuda`` under torchrun means this rank's own GPU."""
    if world.distributed and device == "cuda":
        return f"cuda:{world.local_rank}"
    return device


def wrap(model: torch.nn.Module, world: World, device: str) -> torch.nn.Module:
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def shard(indices: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's equal slice of a global batch of sample indices."""
    if not world.distributed:
        return indices
    per_rank = len(indices) // world.size
    return indices[world.rank * per_rank : (world.rank + 1) * per_rank]


def mean(value: float, world: World, device: str) -> float:
    """The mean of a per-rank scalar over all ranks."""
    if not world.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world.size


def teardown(world: World) -> None:
    """Leave the process group. The caller drops what holds it first (a sharded model,
    its device mesh); the collection after ``destroy_process_group`` frees the groups
    kept only by reference cycles now, while gloo's threads can still take the GIL (at
    interpreter exit they cannot, and the process aborts)."""
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        gc.collect()
