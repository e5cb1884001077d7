"""The training loop: AdamW, linear warm-up then cosine decay per optimizer step,
gradient accumulation, bfloat16 autocast where supported, per-epoch evaluation and
checkpoints that resume exactly.

Exact resumption: every random choice of epoch ``e`` (sample order, mixing boxes,
dropout, RandAugment) is drawn from generators seeded by ``(seed, e, rank)`` at the
start of that epoch, so a checkpoint only needs the weights, the optimizer state and the
step counter — no RNG state — and an interrupted run continues bit for bit.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitgraph.train import advice, ddp, fsdp
from vitgraph.train.checkpoint import checkpoint_meta, load_checkpoint, save_checkpoint
from vitgraph.train.config import TrainConfig, make_config
from vitgraph.train.data import DataError, Dataset, load_data
from vitgraph.train.ema import WeightAverage
from vitgraph.train.metrics import write_metrics
from vitgraph.train.objectives import choose


@dataclass
class TrainResult:
    model: nn.Module
    graph: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    seconds: float = 0.0
    main: bool = True
    """Rank 0 (or the only process): the one that reports."""

    @property
    def val_accuracy(self) -> float:
        return self.history[-1]["val_accuracy"] if self.history else float("nan")


def train(
    spec: str | None = None,
    variant: str | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    recipe: str | None = None,
    log=print,
    **settings: Any,
) -> TrainResult:
    """Train a spec. ``settings`` are :class:`TrainConfig` fields (``data="digits"``,
    ``epochs``, ``batch_size``, ``lr``, ``teacher``, ``resume``, ...)."""
    if settings.get("resume") and not spec:
        saved = load_checkpoint(settings["resume"]).meta["config"]
        config = make_config(**{**saved, **{k: v for k, v in settings.items() if v is not None}})
    else:
        config = make_config(recipe, spec=spec, variant=variant, overrides=overrides, **settings)
    if not config.spec:
        raise ValueError("no spec to train: name one (or a recipe that names one)")
    return Trainer(config, log).run()


def parameter_groups(
    model: Any,
    weight_decay: float,
    lr_scales: dict[str, float] | None = None,
    layer_decay: float | None = None,
) -> list[dict[str, Any]]:
    """timm's optimizer groups: every parameter decays except what the model's blocks
    keep out of weight decay (``model.no_weight_decay()``: position tables, prefix tokens,
    norms, LayerScale, relative-position tables, biases and other 1-D parameters). Any
    model with a ``no_weight_decay()`` (a timm model too). ``lr_scales``: node id ->
    the factor of the learning rate its parameters train at (``lr_scale`` of a group).
    ``layer_decay``: layer-wise learning-rate decay (BEiT §2.4, timm's
    ``--layer-decay``): the head trains at the full rate, each layer below it at
    ``layer_decay`` times the one above (``vitgraph.model.groups``), times its
    ``lr_scales`` factor."""
    exempt = model.no_weight_decay()
    scales = lr_scales or {}
    by_layer: dict[str, float] = {}
    if layer_decay is not None:
        from vitgraph.model.groups import layer_scales

        by_layer = layer_scales(model, layer_decay)

    def scale(name: str) -> float:
        parts = name.split(".")
        for depth in range(len(parts) - 1, 0, -1):
            found = scales.get(".".join(parts[:depth]))
            if found is not None:
                return found
        return 1.0

    # the two groups of old checkpoints always exist, even empty (their resume needs them)
    groups: dict[tuple[bool, float], list[Any]] = {(True, 1.0): [], (False, 1.0): []}
    for name, param in model.named_parameters():
        factor = scale(name) * by_layer.get(name, 1.0)
        groups.setdefault((name not in exempt, factor), []).append(param)
    return [
        {"params": params, "weight_decay": weight_decay if decays else 0.0, "lr_scale": factor}
        for (decays, factor), params in sorted(
            groups.items(), key=lambda kv: (not kv[0][0], kv[0][1])
        )
    ]


def make_optimizer(
    model: nn.Module, config: TrainConfig, lr_scales: dict[str, float] | None = None
) -> torch.optim.Optimizer:
    """AdamW (every recipe's) or SGD with momentum, over :func:`parameter_groups`."""
    groups = parameter_groups(model, config.weight_decay, lr_scales, config.layer_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.peak_lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.peak_lr)


def _full_optimizer_state(
    model: nn.Module, config: TrainConfig, lr_scales: dict[str, float], saved: dict[str, Any]
) -> dict[str, Any]:
    """A one-file checkpoint's optimizer state keyed by parameter name, read on the
    unsharded model (its ``state`` is keyed by position), to be sharded after it."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    optimizer = make_optimizer(model, config, lr_scales)
    optimizer.load_state_dict(saved)
    return get_optimizer_state_dict(model, optimizer)


def init_from(model: nn.Module, path: str) -> list[str]:
    """Load every entry of the safetensors file ``path`` whose name and shape fit
    ``model`` (the rest keeps its init); return the names loaded. None fitting is an
    error: the file is another model's."""
    from safetensors.torch import load_file

    mine = model.state_dict()
    theirs = load_file(path)
    fitting = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
    if not fitting:
        raise DataError(
            f"{path}: none of its {len(theirs)} tensors fits the model by name and shape"
        )
    model.load_state_dict(fitting, strict=False)
    return sorted(fitting)


def finetune_from(model: nn.Module, path: str, spec: str) -> str:
    """Load pretrained weights for fine-tuning (``--pretrained``): every tensor must fit,
    tables of another size are resampled and a classifier of another class count starts
    fresh (``vitgraph.load_weights`` with ``adapt``); a line saying what was adapted."""
    from vitgraph.weights.loader import load_weights

    with warnings.catch_warnings():  # the reset is said in the returned line
        warnings.simplefilter("ignore")
        report = load_weights(model, path, strict=True, adapt=True, spec=spec)
    parts = [f"fine-tuning from {path}"]
    if report.resampled:
        parts.append(f"resampled to this size: {', '.join(report.resampled)}")
    if report.reset:
        parts.append(f"classifier started fresh: {', '.join(report.reset)}")
    return "; ".join(parts)


def schedule(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    """Linear warm-up from 0 over ``warmup`` steps, then cosine from ``lr`` to ``min_lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def _patch_of(graph) -> int | None:
    for node in graph.nodes:
        patch = getattr(node.params, "patch", None)
        if isinstance(patch, int):
            return patch
    return None


_LABELS = {
    "accuracy": "train acc",
    "val_accuracy": "val acc",
    "val_top5": "val top-5",
    "ema_val_accuracy": "ema val acc",
    "ema_val_top5": "ema val top-5",
}


def _describe(stats: dict[str, float]) -> str:
    """One epoch's numbers: loss, the objective's metrics, images per second."""
    parts = [f"loss {stats['loss']:.4f}"]
    parts += [
        f"{_LABELS.get(k, k.replace('_', ' '))} {v:.4f}"
        for k, v in stats.items()
        if k not in ("loss", "images_per_second", "epoch")
    ]
    return "  ".join([*parts, f"{stats['images_per_second']:.0f} img/s"])


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 1_009 + rank) % (2**63)


class Trainer:
    def __init__(self, config: TrainConfig, log=print) -> None:
        from vitgraph.pipeline import load

        self.config = config
        self.log = log
        self.world = ddp.setup(config.device)
        self.device = ddp.device_for(config.device, self.world)
        self.threads_before = torch.get_num_threads()  # given back when the run ends
        notes = [advice.set_threads(config, self.world)]
        ckpt = load_checkpoint(config.resume) if config.resume else None
        graph = load(config.spec, config.variant, config.overrides)
        chosen = choose(graph, config.objective)
        self.data: Dataset = load_data(
            config.data,
            graph.output_shape if chosen.data_at_output_size else graph.input_shape,
            patch=_patch_of(graph),
            val_fraction=config.val_fraction,
            seed=config.seed,
            vocab=getattr(graph.input_type, "vocab", None),
        )
        self.classes = len(self.data.classes)
        notes += [advice.normalisation(graph, self.data), advice.size_note(graph, self.data)]
        # an objective that predicts the input itself (next-token) trains no class head
        if chosen.classifies and "classes" in graph.args and "classes" not in config.overrides:
            config.overrides = {**config.overrides, "classes": self.classes}
            graph = load(config.spec, config.variant, config.overrides)
        out = graph.output_shape[-1]
        if chosen.classifies and out < self.classes:
            raise DataError(
                f"the data has {self.classes} classes but {graph.name} predicts "
                f"{out}; set --set classes={self.classes}"
            )
        notes.append(advice.settle_batch(config, len(self.data.train), self.world.size))
        notes.append(advice.warmup_note(config))
        per_rank, rest = divmod(config.batch, self.world.size)
        if rest:
            raise DataError(f"batch {config.batch} does not split over {self.world.size} processes")
        if len(self.data.train) < config.batch:
            raise DataError(
                f"{len(self.data.train)} training images are fewer than one batch of {config.batch}"
            )
        self.graph = graph
        torch.manual_seed(config.seed)  # the initial weights
        self.model = graph.build(device=self.device)
        if config.init_from and ckpt is None:
            self.initialized = init_from(self.model, config.init_from)
        if config.pretrained and ckpt is None:
            notes.append(finetune_from(self.model, config.pretrained, graph.name))
        if config.grad_checkpointing:
            self.model.set_grad_checkpointing(True)
        teacher = None
        if config.teacher:
            from vitgraph.train.teacher import load_teacher

            teacher = load_teacher(
                config.teacher, config.teacher_checkpoint, self.classes, self.device
            )
        self.objective = chosen(graph, self.model, config, self.classes, teacher)
        # the objective may train parts of the model at a scaled learning rate (DETR's
        # backbone at a tenth), so the optimizer's groups come after it
        lr_scales = self.objective.lr_scales()
        self.sharded = config.strategy == "fsdp" and self.world.distributed
        full_optimizer: dict[str, Any] = {}
        if config.strategy == "fsdp" and not self.world.distributed:
            log(
                "one process: --strategy fsdp trains unsharded here (start it with "
                "torchrun --nproc_per_node=N to shard over N processes)"
            )
        if self.sharded:
            if ckpt is not None and ckpt.sharded is None:  # a one-file checkpoint
                self.model.load_state_dict(ckpt.model)
                full_optimizer = _full_optimizer_state(
                    self.model, config, lr_scales, ckpt.optimizer
                )
            fsdp.shard(self.model, self.world, self.device)
        # DistributedDataParallel (no_sync, ...), the sharded model or the model itself
        self.ddp_model: Any = (
            self.model if self.sharded else ddp.wrap(self.model, self.world, self.device)
        )
        self.optimizer = make_optimizer(self.model, config, lr_scales)
        self.steps_per_epoch = len(self.data.train) // config.batch // config.accumulate
        if self.steps_per_epoch == 0:
            raise DataError(
                f"{len(self.data.train)} training images make no optimizer step of "
                f"{config.batch} x {config.accumulate}"
            )
        self.total_steps = self.steps_per_epoch * config.epochs
        self.warmup = int(round(advice.warmup_epochs(config) * self.steps_per_epoch))
        self.start_epoch, self.step, self.history = 0, 0, []
        if ckpt is not None:
            if ckpt.sharded is not None:  # on any number of processes, sharded or not
                fsdp.load_sharded(ckpt.sharded, self.model, self.optimizer)
            elif self.sharded:
                fsdp.load_full_optimizer(self.model, self.optimizer, full_optimizer)
            else:
                self.model.load_state_dict(ckpt.model)
                self.optimizer.load_state_dict(ckpt.optimizer)
            self.start_epoch, self.step = ckpt.epoch, int(ckpt.meta["step"])
            self.history = list(ckpt.meta["history"])
            notes.append(advice.finished_note(config, self.start_epoch))
        self.ema: WeightAverage | None = None
        if config.ema_decay is not None:
            if self.sharded:
                raise DataError(
                    "--ema-decay with --strategy fsdp: an average of sharded weights is not "
                    "built; train with --strategy ddp, or without --ema-decay"
                )
            self.ema = WeightAverage(self.model, config.ema_decay)
            if ckpt is not None and ckpt.ema:  # the run's average, as it was saved
                self.ema.model.load_state_dict(ckpt.ema)
        for note in notes:
            if note and self.world.main:
                log(note)
        # bfloat16 autocast needs no loss scaling; a GPU without bf16 trains in fp32
        bf16 = not self.device.startswith("cuda") or torch.cuda.is_bf16_supported()
        self.amp = bf16 and (
            config.amp if config.amp is not None else self.device.startswith("cuda")
        )
        self.randaugment = None
        if config.randaugment:
            from torchvision.transforms import v2

            ops, magnitude = config.randaugment
            self.randaugment = v2.RandAugment(num_ops=ops, magnitude=magnitude)

    # -- one epoch ----------------------------------------------------------------------

    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        return torch.autocast(kind, dtype=torch.bfloat16)

    def train_epoch(self, epoch: int, progress) -> dict[str, float]:
        cfg, world = self.config, self.world
        seed = _epoch_seed(cfg.seed, epoch, 0)
        order = torch.randperm(len(self.data.train), generator=torch.Generator().manual_seed(seed))
        torch.manual_seed(_epoch_seed(cfg.seed, epoch, world.rank))  # dropout, RandAugment
        mix_gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch, world.rank) + 1)
        self.ddp_model.train()
        micro = cfg.batch
        total_loss = seen = 0.0
        sums: dict[str, float] = {}  # the objective's running metrics (e.g. correct)
        start = time.perf_counter()
        task = (
            progress.add_task(
                f"epoch {epoch + 1}/{cfg.epochs}",
                total=self.steps_per_epoch,
                loss="-",
                acc="-",
                rate="-",
            )
            if progress
            else None
        )
        for step_in_epoch in range(self.steps_per_epoch):
            lr = schedule(self.step, self.total_steps, self.warmup, cfg.peak_lr, cfg.min_lr)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            self.optimizer.zero_grad(set_to_none=True)
            for k in range(cfg.accumulate):
                begin = (step_in_epoch * cfg.accumulate + k) * micro
                idx = ddp.shard(order[begin : begin + micro], world)
                batch = self.data.train.batch(idx, self.device, self.randaugment)
                sync = k == cfg.accumulate - 1 or not world.distributed
                context = contextlib.nullcontext() if sync else self._no_sync()
                with context:
                    with self._autocast():
                        loss, metrics = self.objective.step(self.ddp_model, batch, mix_gen)
                    (loss / cfg.accumulate).backward()
                total_loss += loss.item() * len(idx)
                for key, value in metrics.items():
                    sums[key] = sums.get(key, 0.0) + value
                seen += len(idx)
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.step += 1
            if progress:
                rate = seen * world.size / (time.perf_counter() - start)
                progress.update(
                    task,
                    advance=1,
                    loss=f"{total_loss / seen:.3f}",
                    acc=f"{sums.get('correct', 0.0) / seen:.3f}",
                    rate=f"{rate:.0f} img/s",
                )
        if progress:
            progress.remove_task(task)
        elapsed = time.perf_counter() - start
        stats = {"loss": ddp.mean(total_loss / seen, world, self.device)}
        for key, value in sums.items():  # per-sample means (a classifier's: accuracy)
            name = "accuracy" if key == "correct" else key
            stats[name] = ddp.mean(value / seen, world, self.device)
        stats["images_per_second"] = seen * world.size / elapsed
        return stats

    def evaluate(self, split: Any = None) -> dict[str, float]:
        """The objective's held-out metrics (``val_accuracy`` for a classifier)."""
        split = split if split is not None else self.data.val
        return self.objective.evaluate(self.model, split, self.device, self._autocast)

    # -- the run ------------------------------------------------------------------------

    def run(self) -> TrainResult:
        cfg, world = self.config, self.world
        out = Path(cfg.out) if cfg.out else None
        checkpoint = None
        started = time.perf_counter()
        last = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, cfg.stop_after)
        with self._progress() as progress:
            for epoch in range(self.start_epoch, last):
                stats = self.train_epoch(epoch, progress)
                stats.update(self.evaluate())
                if self.ema is not None:
                    ema = self.objective.evaluate(
                        self.ema.model, self.data.val, self.device, self._autocast
                    )
                    stats.update({f"ema_{k}": v for k, v in ema.items()})
                stats["epoch"] = epoch + 1
                self.history.append(stats)
                if world.main:
                    self.log(f"epoch {epoch + 1}/{cfg.epochs}  {_describe(stats)}")
                if out is not None and (world.main or self.sharded):  # all ranks write shards
                    checkpoint = self.save(out, epoch + 1)
                if out is not None and world.main:
                    write_metrics(out, self.history)
        # a sharded model's weights are gathered by every rank, written by rank 0
        state = fsdp.full_state(self.model, every_rank=True) if self.sharded else None
        if out is not None and world.main:
            from vitgraph.weights import save_weights

            save_weights(self.model, self.graph, out / "model.safetensors", state=state)
            if self.ema is not None:
                save_weights(self.ema.model, self.graph, out / "model_ema.safetensors")
        self.objective.close()
        if state is not None:
            self._unshard(state)
        ddp.teardown(world)
        note = advice.stopped_note(cfg, last, checkpoint if out is not None else None)
        if note and world.main:
            self.log(note)
        torch.set_num_threads(self.threads_before)
        seconds = time.perf_counter() - started
        return TrainResult(self.model, self.graph, self.history, checkpoint, seconds, world.main)

    def _unshard(self, state: dict[str, torch.Tensor]) -> None:
        """The result of a sharded run is one plain model with the gathered weights on
        every rank, and nothing is left that holds the process group (FSDP's state, the
        device mesh, the optimizer's sharded state): they must go, and gloo's worker
        threads with them, while the interpreter runs. Kept to interpreter exit, a gloo
        thread that frees a tensor cannot take the GIL; Python 3.11 ends the thread inside
        a noexcept destructor and the process aborts ("terminate called without an active
        exception", about one torchrun launch in 20 before this)."""
        model = self.graph.build(device=self.device)
        model.load_state_dict(state)
        del self.optimizer, self.ddp_model, self.objective
        self.model = model
        gc.collect()

    def _no_sync(self):
        """Gradient accumulation without communication until the last micro-batch."""
        if self.sharded:
            return fsdp.no_sync(self.model)
        return self.ddp_model.no_sync()

    def save(self, out: Path, epoch: int) -> Path:
        config = self.config.as_dict()
        config.update(resume=None, stop_after=None)
        if self.sharded:
            meta = checkpoint_meta(
                self.graph, epoch=epoch, step=self.step, config=config, history=self.history
            )
            return fsdp.save_sharded(out / "last.sharded", self.model, self.optimizer, meta)
        return save_checkpoint(
            out / "last.safetensors",
            self.model,
            self.optimizer,
            self.graph,
            epoch=epoch,
            step=self.step,
            config=config,
            history=self.history,
            ema=self.ema.model if self.ema is not None else None,
        )

    def _progress(self):
        if not (self.config.progress and self.world.main):
            return contextlib.nullcontext()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        # on stderr, so ``vitgraph train --json`` keeps stdout for the JSON
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  acc {task.fields[acc]}  {task.fields[rate]}"),
            transient=True,
            console=Console(stderr=True),
        )
