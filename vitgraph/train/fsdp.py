"""Fully sharded data parallel training (FSDP2, ``torch.distributed.fsdp.fully_shard``).

Each rank holds a 1/world slice of every parameter, gradient and optimizer state; a
unit's full weights exist only while it runs. The unit is the same one activation
checkpointing uses (``vitgraph.model.layout``): one repeat instance, ``blocks.3``.

Why the leaves, not the unit: the compiled fx graph calls a unit's leaf modules
(``blocks.3.attn``, ``blocks.3.mlp``) directly and never ``blocks.3`` itself, so a hook
on ``blocks.3`` would never fire. ``fully_shard`` of the list of a unit's leaves makes
them one communication group: one all-gather before the first of them runs, one
reduce-scatter after the last one's backward. What no unit owns (the stem, position
tables, the final norm, the head) is sharded with the root module.

Checkpoints are ``torch.distributed.checkpoint`` folders (each rank writes its shards;
they load back on any number of processes) plus ``vitgraph.json`` with what a
``last.safetensors`` holds as metadata; :func:`gather` writes one safetensors file.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import fx, nn

from vitgraph.compiler import META_ID
from vitgraph.model.layout import cached_layout
from vitgraph.train.checkpoint import META_FILE, read_meta
from vitgraph.train.ddp import World


def unit_leaves(model: fx.GraphModule) -> dict[str, list[str]]:
    """Per checkpoint unit, the module paths its graph nodes call, in call order. A
    module called from two units, or holding a parameter another unit's module holds
    (tied weights), belongs to no unit: the root shards it."""
    units = cached_layout(model).units
    calls: dict[str, list[str]] = {}
    owner: dict[str, str | None] = {}
    for node in model.graph.nodes:
        if node.op != "call_module":
            continue
        target = str(node.target)
        unit = units.get(node.meta.get(META_ID, ""))
        if target in owner and owner[target] != unit:
            owner[target] = None
        else:
            owner.setdefault(target, unit)
        if unit is not None and target not in calls.setdefault(unit, []):
            calls[unit].append(target)
    groups = {u: [t for t in targets if owner[t] == u] for u, targets in calls.items()}
    modules = dict(model.named_modules())
    holder: dict[int, str] = {}
    shared: set[str] = set()
    for unit, targets in groups.items():
        for target in targets:
            for p in modules[target].parameters():
                if holder.setdefault(id(p), unit) != unit:
                    shared |= {unit, holder[id(p)]}
    return {
        u: ts for u, ts in groups.items() if ts and u not in shared and _has_params(modules, ts)
    }


def _has_params(modules: dict[str, nn.Module], targets: list[str]) -> bool:
    return any(p.requires_grad for t in targets for p in modules[t].parameters())


def shard(model: fx.GraphModule, world: World, device: str) -> None:
    """Shard ``model`` in place over every process of the group: each unit's leaves as
    one group, then the root (the model becomes an ``FSDPModule``)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cuda" if device.startswith("cuda") else "cpu", (world.size,))
    modules = dict(model.named_modules())
    for targets in unit_leaves(model).values():
        fully_shard([modules[t] for t in targets], mesh=mesh)
    fully_shard(model, mesh=mesh)
    if not in_place_steps(model):
        # FSDP warns on every forward that a module returning a view loses its backward
        # hook if the caller then writes into that view in place; the compiled graph
        # never does (checked just above), so the warning says nothing here.
        warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view")


def in_place_steps(model: fx.GraphModule) -> list[str]:
    """The graph's steps that write into their input (``x.add_``, a ``ReLU(inplace)``
    called by the graph): under FSDP a step like that on a module's output skips the
    module's gradient hook."""
    modules = dict(model.named_modules())
    found = []
    for node in model.graph.nodes:
        if node.op == "call_module":
            writes = bool(getattr(modules[str(node.target)], "inplace", False))
        elif node.op in ("call_method", "call_function"):
            name = node.target if isinstance(node.target, str) else node.target.__name__
            writes = name.endswith("_") and not name.endswith("__") or name.startswith("__i")
        else:
            writes = False
        if writes:
            found.append(node.name)
    return found


def sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state(model: nn.Module, every_rank: bool = False) -> dict[str, torch.Tensor]:
    """The model's whole state_dict as plain tensors (a collective: every rank calls it).
    Rank 0 receives them on the CPU and the others an empty dict, or, ``every_rank``,
    every rank receives them on the model's device."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=not every_rank)
    state = get_model_state_dict(model, options=options)
    return {name: value for name, value in state.items() if isinstance(value, torch.Tensor)}


# -- sharded checkpoints -----------------------------------------------------------------


def save_sharded(
    folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, str]
) -> Path:
    """Every rank writes its shards of the model and optimizer state; rank 0 writes the
    metadata. Written beside ``folder`` and renamed at the end, so a run killed
    mid-write keeps the previous checkpoint."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    main = not dist.is_initialized() or dist.get_rank() == 0
    tmp = folder.with_name(folder.name + ".tmp")
    if main and tmp.exists():
        shutil.rmtree(tmp)
    _barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    dcp.save(state, checkpoint_id=str(tmp), no_dist=not dist.is_initialized())
    if main:
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.replace(folder)
    _barrier()
    return folder


def load_sharded(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load a sharded checkpoint into ``model`` and ``optimizer``, sharded or not, on any
    number of processes (torch.distributed.checkpoint re-slices the shards)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    _read(state, folder)
    # dcp.load fills the dicts in place (the same objects as ``state``'s values)
    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optim_state)


def gather(folder: str | Path, out: str | Path) -> Path:
    """One safetensors weights file (as ``vitgraph build --out`` writes) from a sharded
    checkpoint, in one process: the model is rebuilt from the spec in the metadata and
    the shards are read into it."""

    from vitgraph.train.checkpoint import rebuild_graph
    from vitgraph.weights import save_weights

    folder = Path(folder)
    graph = rebuild_graph(read_meta(folder))
    model = graph.build()
    state = {"model": model.state_dict()}
    _read(state, folder)
    model.load_state_dict(state["model"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, graph, out)
    return out


def _read(state: dict[str, Any], folder: Path) -> None:
    """``dcp.load`` into ``state``; in one process without a process group, which it
    warns about on every call although that is what is meant (resume or gather in one
    process)."""
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(folder), no_dist=not dist.is_initialized())


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def load_full_optimizer(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Shard an optimizer state keyed by parameter name with full tensors (from a
    one-file checkpoint) into ``optimizer`` of the sharded ``model``."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True)
    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=options)


@contextmanager
def no_sync(model: nn.Module) -> Iterator[None]:
    """Accumulate gradients locally (no reduce-scatter) inside the block."""
    model.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]
