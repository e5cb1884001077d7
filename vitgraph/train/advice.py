"""The defaults a run settles before its first step, and what it tells the user about
them: the warm-up, the CPU threads, the normalisation, a data set far smaller than the
spec's input, a run that is already finished or stopped early."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vitgraph.train.config import TrainConfig
from vitgraph.train.data import Dataset
from vitgraph.train.ddp import World

#: a spec input with more than this many times the data's pixels gets a note
UPSAMPLED = 16


def warmup_epochs(config: TrainConfig) -> float:
    """One epoch, or a tenth of a run shorter than ten epochs."""
    if config.warmup_epochs is not None:
        return config.warmup_epochs
    return min(1.0, 0.1 * config.epochs)


#: the default batch, and the learning rate the defaults use at that batch
BATCH, LR = 64, 1e-3
#: a run shorter than this many optimizer steps at the default batch gets a smaller one
MIN_STEPS = 300
#: the smallest batch the defaults choose
SMALLEST_BATCH = 4


def settle_batch(config: TrainConfig, images: int, processes: int) -> str | None:
    """Fill in the batch and learning rate the user left to the defaults. A short run on
    a small data set at batch 64 makes a handful of steps (one epoch of digits: 22), too
    few for a transformer trained from scratch to leave chance; the default batch halves
    until the run makes ``MIN_STEPS`` steps (4 at least, a multiple of the processes),
    and the learning rate follows the batch linearly (Goyal et al. 2017, the rule DeiT's
    ``lr = 5e-4 * batch / 512`` follows).

    Measured (deit_ti at 224 px, one epoch of digits, val accuracy; chance 0.10): batch
    64 at 1e-3 0.100; batch 16 at 5e-4 0.100; batch 8 at 3e-4 0.114, at 1.25e-4 0.184,
    at 6e-5 0.248, at 3e-5 0.231; batch 4 at 1e-4 0.217, at 5e-5 0.254, at 2.5e-5 0.245:
    more, smaller steps at a rate that falls with the batch, as the rule gives."""
    chose_batch = config.batch_size is None
    if chose_batch:
        batch = BATCH
        while batch > SMALLEST_BATCH and _steps(images, batch, config) < MIN_STEPS:
            batch //= 2
        config.batch_size = max(processes, batch // processes * processes)
    if config.lr is None:
        config.lr = LR * config.batch * config.accumulate / BATCH  # per optimizer step
    if not chose_batch or config.batch == BATCH:
        return None
    return (
        f"batch {config.batch}, lr {config.peak_lr:g}: {config.epochs} epoch"
        f"{'s' if config.epochs > 1 else ''} of {images} images at batch {BATCH} would be "
        f"{_steps(images, BATCH, config)} optimizer steps, too few to learn in; "
        f"--batch-size and --lr set them"
    )


def _steps(images: int, batch: int, config: TrainConfig) -> int:
    return images // batch // config.accumulate * config.epochs


def warmup_note(config: TrainConfig) -> str | None:
    if config.warmup_epochs is not None and config.warmup_epochs >= config.epochs:
        return (
            f"note: the warm-up ({config.warmup_epochs:g} epochs) covers the whole run of "
            f"{config.epochs}: the learning rate never reaches {config.peak_lr:g}; "
            f"--warmup-epochs {0.1 * config.epochs:g} warms up for a tenth of it"
        )
    return None


def set_threads(config: TrainConfig, world: World) -> str | None:
    """Set this process's CPU threads and say how many, of how many cores, and why:
    ``--threads``; under ``torchrun`` each process keeps ``OMP_NUM_THREADS`` (torchrun
    sets 1 unless it is set), else takes its share of the cores; one process takes the
    cores the load average leaves idle (one at least)."""
    if not config.device.startswith("cpu"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world.size)))
    if config.threads is not None:
        torch.set_num_threads(config.threads)
        why = f"--threads; {cores} cores"
    elif world.distributed and os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        why = f"OMP_NUM_THREADS; {cores} cores shared by {local} processes"
    elif world.distributed:
        torch.set_num_threads(max(1, cores // local))
        why = f"{cores} cores shared by {local} processes"
    else:
        # a busy CPU: threads beyond the idle cores spin against other processes (seen:
        # deit_ti at 2 img/s with 2 threads on 2 cores at load 7, 10x under 1 thread)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        torch.set_num_threads(max(1, min(cores, cores - int(load))))
        why = f"{cores} cores, load average {load:.1f}"
    threads = torch.get_num_threads()
    plural = "s" if threads > 1 else ""
    return f"cpu: {threads} thread{plural} per process ({why}; --threads N sets it)"


def normalisation(graph: Any, data: Dataset) -> str | None:
    """Normalise with the spec's ``data:`` mean and std (as its pretrained weights
    expect); say why not when they do not fit the images."""
    if getattr(data.train, "ids", False):
        return None
    block = graph.source.document.data
    channels = int(graph.input_shape[0])
    if len(block.mean) != channels or len(block.std) != channels:
        return (
            f"note: the spec's data block has {len(block.mean)} channel means for "
            f"{channels} input channels; normalising with mean 0.5, std 0.5"
        )
    for split in (data.train, data.val):
        split.mean, split.std = tuple(block.mean), tuple(block.std)
    return None


def size_note(graph: Any, data: Dataset) -> str | None:
    """A note when the data is far smaller than the spec's input (every image upsampled:
    slow, and nothing gained), with the ``--set`` that trains at a size that fits."""
    if data.native is None or getattr(data.train, "ids", False):
        return None
    height, width = (int(d) for d in graph.input_shape[-2:])
    small_h, small_w = data.native
    if height * width <= UPSAMPLED * small_h * small_w:
        return None
    sets = _smaller(graph, 4 * max(small_h, small_w))
    hint = f"; to train at a size that fits: {sets}" if sets else ""
    return (
        f"note: {data.source} images are {small_h}x{small_w} px and "
        f"{graph.variant or graph.name} takes "
        f"{height}x{width}: every image is upsampled {height * width // (small_h * small_w)}x "
        f"in pixels{hint}"
    )


def _smaller(graph: Any, size: int) -> str:
    args = graph.args
    if "image_size" not in args:
        return ""
    if "patch" in args and isinstance(args["patch"], int):
        patch = 4 if size % 4 == 0 else 1
        return f"--set image_size={size} --set patch={patch}"
    return f"--set image_size={size}"


def finished_note(config: TrainConfig, start_epoch: int) -> str | None:
    if config.resume and start_epoch >= config.epochs:
        return (
            f"{config.resume} is already at epoch {start_epoch} of {config.epochs}: nothing "
            f"left to train. To train longer: vitgraph train --resume {config.resume} "
            f"--epochs {start_epoch + max(1, config.epochs // 2)}"
        )
    return None


def stopped_note(config: TrainConfig, epoch: int, checkpoint: Path | None) -> str | None:
    if config.stop_after is None or epoch >= config.epochs:
        return None
    if checkpoint is None:
        return (
            f"stopped after epoch {epoch} of {config.epochs} (--stop-after); nothing was "
            f"saved to resume from (no --out)"
        )
    return (
        f"stopped after epoch {epoch} of {config.epochs} (--stop-after); continue with: "
        f"vitgraph train --resume {checkpoint}"
    )
