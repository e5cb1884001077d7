"""``vitgraph eval``: a model's numbers on data, one command for every task.

Two ways in:

- a spec and weights on an image folder (``DIR/<class>/*.jpg``, or its ``val/`` when
  ``DIR`` holds ``train/`` and ``val/``): each image prepared as timm's evaluation
  transform prepares it from the spec's ``data:`` block (the shorter side resized to
  ``size / crop_pct`` with its interpolation, the centre ``size`` crop, scaled to [0, 1],
  normalised by ``mean`` and ``std``), then top-1, top-5 and the cross-entropy — the
  numbers timm's ``validate.py`` prints for the same folder and weights;
- a training checkpoint (``last.safetensors``, ``last.sharded``): the run's own data, split
  and pre-processing rebuilt from the checkpoint, evaluated by the run's objective
  (classification accuracy, detection COCO mAP, next-token bits per token): the numbers
  its training log ends with.

Class ``i`` of a folder is its ``i``-th sub-folder in sorted order (torchvision's and
timm's ImageFolder), so an ImageNet validation folder named by synset ids lines up with
a 1000-class head.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitgraph.train.data.base import DataError
from vitgraph.train.data.folder import IMAGE_SUFFIXES

#: PIL's resampling filter for each of timm's interpolation names
_FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}

Transform = Callable[[Any], torch.Tensor]


def eval_transform(
    size: tuple[int, int],
    channels: int,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    crop_pct: float,
    interpolation: str,
) -> Transform:
    """A PIL image → the ``(C, H, W)`` float tensor of timm's ``transforms_imagenet_eval``
    (crop mode 'center'), step for step: torchvision's shorter-side ``Resize`` (or timm's
    ``ResizeKeepRatio`` for a non-square target), ``CenterCrop``, ``ToTensor``,
    ``Normalize``."""
    if interpolation not in _FILTERS:
        raise DataError(
            f"interpolation '{interpolation}' is not one of {', '.join(sorted(_FILTERS))}"
        )
    resample = _FILTERS[interpolation]
    scale = tuple(math.floor(side / crop_pct) for side in size)
    mode = "L" if channels == 1 else "RGB"
    mean_t = torch.tensor(mean).view(-1, 1, 1)
    std_t = torch.tensor(std).view(-1, 1, 1)

    def prepare(image: Any) -> torch.Tensor:
        image = image.convert(mode)
        width, height = image.size
        if scale[0] == scale[1]:  # torchvision Resize(int): the shorter side to `scale`
            short, long = min(width, height), max(width, height)
            new_short, new_long = scale[0], int(scale[0] * long / short)
            new = (new_short, new_long) if width <= height else (new_long, new_short)
        else:  # timm's ResizeKeepRatio: the side that needs the least shrinking fits
            ratio = min(height / scale[0], width / scale[1])
            new = (round(width / ratio), round(height / ratio))
        if new != (width, height):
            image = image.resize(new, resample)
        width, height = image.size
        if width < size[1] or height < size[0]:
            raise DataError(
                f"an image of {width}x{height} after the resize is smaller than the "
                f"{size[1]}x{size[0]} crop (crop_pct {crop_pct} > 1?)"
            )
        top = int(round((height - size[0]) / 2.0))
        left = int(round((width - size[1]) / 2.0))
        image = image.crop((left, top, left + size[1], top + size[0]))
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        tensor = pixels.view(size[0], size[1], -1).permute(2, 0, 1).float() / 255
        return (tensor - mean_t) / std_t

    return prepare


def transform_for(model: nn.Module) -> Transform:
    """The evaluation transform of a built model, from its ``pretrained_cfg`` (the spec's
    ``data:`` block and input)."""
    cfg: dict[str, Any] = getattr(model, "pretrained_cfg")  # noqa: B009 (nn.Module's typing)
    channels, height, width = cfg["input_size"]
    return eval_transform(
        (height, width),
        channels,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        crop_pct=cfg["crop_pct"],
        interpolation=cfg["interpolation"],
    )


def folder_images(root: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """The (file, class index) pairs of an image folder (its ``val/`` when it has
    ``train/`` and ``val/``), classes in sorted order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if (root / "train").is_dir() and (root / "val").is_dir():
        root = root / "val"
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [
        (f, i)
        for i, d in enumerate(dirs)
        for f in sorted(d.rglob("*"))
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise DataError(
            f"data folder {root} has no images: it needs one sub-folder per class with "
            f"image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return files, [d.name for d in dirs]


def _batches(
    files: list[tuple[Path, int]], prepare: Transform, batch: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    from PIL import Image, UnidentifiedImageError

    for begin in range(0, len(files), batch):
        images, labels = [], []
        for path, label in files[begin : begin + batch]:
            try:
                with Image.open(path) as image:
                    images.append(prepare(image))
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"cannot read image {path}: {exc}") from None
            labels.append(label)
        yield torch.stack(images), torch.tensor(labels)


def evaluate_folder(
    model: nn.Module,
    root: str | Path,
    *,
    batch: int = 64,
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Top-1 and top-5 accuracy (fractions) and mean cross-entropy of a classifier on an
    image folder, prepared as timm prepares it for evaluation."""
    files, classes = folder_images(root)
    outputs = int(getattr(model, "num_classes"))  # noqa: B009 (nn.Module's typing)
    if outputs < len(classes):
        raise DataError(
            f"the folder has {len(classes)} classes but the model predicts {outputs}: "
            "a folder of the model's classes (one sub-folder each, in its class order)"
        )
    prepare = transform_for(model)
    model.eval().to(device)
    top1 = top5 = 0
    loss = 0.0
    bar = _bar(progress, len(files))
    with bar as shown, torch.no_grad():
        task = shown.add_task("eval", total=len(files)) if shown is not None else None
        for images, labels in _batches(files, prepare, batch):
            out = model(images.to(device))
            logits = (out[0] if isinstance(out, tuple) else out).float().cpu()
            loss += F.cross_entropy(logits, labels, reduction="sum").item()
            best = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
            top1 += (best[:, 0] == labels).sum().item()
            top5 += (best == labels[:, None]).any(-1).sum().item()
            if shown is not None and task is not None:
                shown.advance(task, len(labels))
    count = len(files)
    return {
        "top1": top1 / count,
        "top5": top5 / count,
        "loss": loss / count,
        "images": count,
        "classes": len(classes),
    }


def _bar(on: bool, total: int) -> AbstractContextManager[Any]:
    if not on:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    # on stderr, so ``--json`` keeps stdout for the numbers
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        transient=True,
        console=Console(stderr=True),
    )


def is_checkpoint(path: str | Path) -> bool:
    """A training checkpoint (not a plain weights file): its metadata holds a run."""
    from vitgraph.train.checkpoint import FORMAT

    path = Path(path)
    if path.is_dir():
        return (path / "vitgraph.json").is_file()
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get("format") == FORMAT


def evaluate_checkpoint(path: str | Path) -> dict[str, Any]:
    """The run's objective on the run's own validation split, rebuilt from the
    checkpoint: the numbers the training log printed after the checkpoint's epoch."""
    from vitgraph.train.checkpoint import load_checkpoint
    from vitgraph.train.config import FIELDS, TrainConfig
    from vitgraph.train.loop import Trainer

    ckpt = load_checkpoint(path)
    saved = {k: v for k, v in ckpt.meta["config"].items() if k in FIELDS}
    config = TrainConfig(**{**saved, "resume": str(path), "progress": False})
    trainer = Trainer(config, log=lambda *_: None)
    try:
        numbers = trainer.evaluate()
    finally:
        trainer.objective.close()
        torch.set_num_threads(trainer.threads_before)
    return {**numbers, "epoch": ckpt.epoch, "data": config.data}
