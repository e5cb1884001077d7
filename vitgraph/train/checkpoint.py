"""Checkpoints: one safetensors file holding everything a run needs to continue exactly.

Tensors: the model's state_dict under ``model.``, the optimizer's per-parameter state
under ``optimizer.<index>.<name>``. Metadata (strings): the spec text, variant and
overrides (so the model rebuilds from the file alone), the training config, the epoch
and optimizer step reached, the optimizer's param groups and the history. No pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from vitgraph.weights.format import spec_metadata

FORMAT = "vitgraph-train-1"
#: the file beside a sharded (FSDP) checkpoint's shards holding its metadata
META_FILE = "vitgraph.json"


@dataclass
class Checkpoint:
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    meta: dict[str, Any]
    sharded: Path | None = None
    """A sharded (FSDP) checkpoint's folder; its tensors stay on disk until loaded."""
    ema: dict[str, torch.Tensor] = field(default_factory=dict)
    """The run's weight average (``--ema-decay``), empty without one."""

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    graph,
    *,
    epoch: int,
    step: int,
    config: dict[str, Any],
    history: list[dict[str, Any]],
    ema: nn.Module | None = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update(
            {f"ema.{k}": v.detach().contiguous().cpu() for k, v in ema.state_dict().items()}
        )
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in opt["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    meta = {
        **checkpoint_meta(graph, epoch=epoch, step=step, config=config, history=history),
        "param_groups": json.dumps(opt["param_groups"]),
        "optimizer_scalars": json.dumps(scalars),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)  # atomic: a run killed mid-write leaves the previous checkpoint
    return path


def checkpoint_meta(
    graph, *, epoch: int, step: int, config: dict[str, Any], history: list[dict[str, Any]]
) -> dict[str, str]:
    """What a checkpoint says besides its tensors (strings, as safetensors metadata)."""
    return {
        "format": FORMAT,
        **spec_metadata(graph),
        "epoch": str(epoch),
        "step": str(step),
        "config": json.dumps(config),
        "history": json.dumps(history),
    }


def load_checkpoint(path: str | Path) -> Checkpoint:
    """A ``last.safetensors`` file, or a sharded checkpoint's folder (``last.sharded``:
    only its metadata is read here; ``vitgraph.train.fsdp.load_sharded`` reads the
    shards into a model)."""
    path = Path(path)
    if path.is_dir():
        meta = read_meta(path)
        for key in ("config", "history"):
            meta[key] = json.loads(meta[key])
        return Checkpoint({}, {}, meta, sharded=path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    model: dict[str, torch.Tensor] = {}
    ema: dict[str, torch.Tensor] = {}
    state: dict[int, dict[str, Any]] = {}
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        for key in f.keys():
            if key.startswith("model."):
                model[key[len("model.") :]] = f.get_tensor(key)
            elif key.startswith("ema."):
                ema[key[len("ema.") :]] = f.get_tensor(key)
            elif key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = f.get_tensor(key)
    if meta.get("format") != FORMAT:  # a plain weights file (vitgraph build --out)
        return Checkpoint(model or _plain(path), {}, meta)
    for index, values in json.loads(meta["optimizer_scalars"]).items():
        state.setdefault(int(index), {}).update(values)
    optimizer = {"state": state, "param_groups": json.loads(meta["param_groups"])}
    for key in ("config", "history"):
        meta[key] = json.loads(meta[key])
    return Checkpoint(model, optimizer, meta, ema=ema)


def _plain(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def rebuild_graph(meta: dict[str, Any]):
    """The graph a checkpoint was trained from (spec text from its metadata)."""
    from vitgraph.pipeline import load

    overrides = json.loads(meta.get("overrides") or "{}")
    variant = meta.get("variant") or None
    if meta.get("spec"):
        return load(meta.get("spec_file") or "<checkpoint>", variant, overrides, text=meta["spec"])
    return load(meta["spec_name"], variant, overrides)


def read_meta(folder: Path) -> dict[str, Any]:
    path = folder / META_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a vitgraph sharded checkpoint (no {META_FILE} in it)"
        )
    return json.loads(path.read_text(encoding="utf-8"))
