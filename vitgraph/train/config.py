"""The training configuration: one flat dataclass, filled from defaults, a recipe file
(``specs/recipes/<name>.yaml``, shipped next to the specs) and keyword arguments /
command-line flags, in that order."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vitgraph.suggest import did_you_mean


@dataclass
class TrainConfig:
    spec: str = ""
    """A spec file, a shipped spec name or a variant name."""
    variant: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    """Spec overrides (``--set``); ``classes`` is set from the data unless given."""
    data: str = "digits"
    """``digits`` (scikit-learn's, upsampled) or a folder with one sub-folder per class."""
    val_fraction: float = 0.2
    epochs: int = 10
    batch_size: int | None = None
    """Global micro-batch (split over DDP ranks); one optimizer step every ``accumulate``.
    Default 64, or a smaller batch when 64 would leave a short run too few optimizer
    steps to learn in (:func:`vitgraph.train.advice.settle_batch`; the run says so)."""
    accumulate: int = 1
    lr: float | None = None
    """Peak learning rate; default 1e-3 at batch 64, scaled linearly with the batch."""
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float | None = None
    """Linear warm-up length; default one epoch, or a tenth of the run when it is shorter
    than ten epochs (a one-epoch run that warms up for one epoch never trains at ``lr``)."""
    label_smoothing: float = 0.1
    grad_clip: float | None = None
    amp: bool | None = None
    """Mixed precision (bfloat16 autocast); default: on for CUDA, off on CPU."""
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    """CPU threads per process; default the cores this process may use divided by the
    processes ``torchrun`` started on this machine (``OMP_NUM_THREADS`` wins if set)."""
    out: str | None = None
    """Folder for ``last.safetensors`` (full state) and ``model.safetensors`` (weights)."""
    resume: str | None = None
    stop_after: int | None = None
    """Stop after this epoch (as if killed there; the checkpoint lets ``resume`` go on)."""
    strategy: str = "ddp"
    """Under ``torchrun``: ``ddp`` (every rank holds the whole model) or ``fsdp`` (FSDP2:
    parameters, gradients and optimizer state sharded over the ranks; sharded
    checkpoints). One plain process trains unsharded either way."""
    grad_checkpointing: bool = False
    """Activation checkpointing per repeat unit (recompute each layer in the backward)."""
    optimizer: str = "adamw"
    """``adamw`` (the default of every recipe) or ``sgd`` (with ``momentum``)."""
    momentum: float = 0.9
    progress: bool = True
    # -- augmentation ---------------------------------------------------------------------
    mixup: float = 0.0
    """MixUp Beta(alpha, alpha); 0 = off."""
    randaugment: list[int] | None = None
    """``[num_ops, magnitude]`` of torchvision's RandAugment; null = off."""
    # -- objectives ----------------------------------------------------------------------
    objective: str | None = None
    """A training objective by name (``vitgraph.train.objectives``); default: the one the
    spec's heads ask for, else ``classification``."""
    teacher: str | None = None
    """Distillation / token-label teacher: a checkpoint, a spec (+ ``teacher_checkpoint``)
    or ``timm:<model name>``."""
    teacher_checkpoint: str | None = None
    distill: str = "hard"
    """DeiT distillation kind: ``hard`` or ``soft``."""
    distill_alpha: float = 0.5
    distill_tau: float = 1.0
    mix_token: bool = True
    """MixToken for specs with a token-label head (LV-ViT)."""
    token_label_weight: float = 0.5
    cosine_weight: float = 0.0
    """Gong et al.'s pairwise cosine-similarity penalty on the last layer's patch tokens."""
    contrastive_weight: float = 0.0
    """Gong et al.'s patch contrastive loss (last layer vs first-layer embedding)."""
    patch_mix_weight: float = 0.0
    """Gong et al.'s patch mixing loss (patch-aligned CutMix, per-patch labels)."""
    init_from: str | None = None
    """Start from these weights (a safetensors file, e.g. another run's ``model.safetensors``):
    every entry whose name and shape fit the model is loaded, the rest keeps its fresh
    init (DETR from a backbone trained as a classifier with the same node ids)."""
    backbone_lr: float = 0.1
    """The detection objective's backbone learning rate over ``lr`` (DETR's recipe: 1e-5
    over 1e-4); the backbone is every node a feature pyramid is gathered from."""
    pretrained: str | None = None
    """Fine-tune from these weights (a safetensors file: ``vitgraph build --out``, a run's
    ``model.safetensors``, or a timm checkpoint in timm's key names): every tensor must
    load, except that position and relative-position tables of another size are
    resampled to the spec's (each block's ``resample`` hook) and a classifier of another
    class count starts fresh, as timm's fine-tuning does."""
    layer_decay: float | None = None
    """Layer-wise learning-rate decay (BEiT §2.4, timm's ``--layer-decay``): the head
    trains at the full rate, each layer below at this factor times the one above (the
    layers of ``model.group_matcher()``)."""
    ema_decay: float | None = None
    """Keep an exponential moving average of the weights with this decay (timm's
    ``--model-ema-decay``, e.g. 0.9998): evaluated every epoch (``ema_val_*``), saved as
    ``model_ema.safetensors`` and in the checkpoint."""

    @property
    def batch(self) -> int:
        """The batch once the run has settled it (:func:`vitgraph.train.advice.settle_batch`)."""
        if self.batch_size is None:
            raise RuntimeError("the batch is settled when the run starts")
        return self.batch_size

    @property
    def peak_lr(self) -> float:
        """The learning rate once the run has settled it."""
        if self.lr is None:
            raise RuntimeError("the learning rate is settled when the run starts")
        return self.lr

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def make_config(recipe: str | None = None, **values: Any) -> TrainConfig:
    """Defaults, then the recipe's keys, then ``values`` (None values are skipped)."""
    merged: dict[str, Any] = {}
    if recipe:
        merged.update(load_recipe(recipe))
    for key, value in values.items():
        if key == "overrides":
            merged["overrides"] = {**merged.get("overrides", {}), **(value or {})}
        elif value is not None:
            merged[key] = value
    unknown = sorted(set(merged) - FIELDS)
    if unknown:
        raise ValueError(
            f"unknown training setting '{unknown[0]}'{did_you_mean(unknown[0], FIELDS)}"
        )
    for key, allowed in CHOICES.items():
        if key in merged and merged[key] not in allowed:
            raise ValueError(
                f"{key} '{merged[key]}' is not one of {', '.join(allowed)}"
                f"{did_you_mean(str(merged[key]), allowed)}"
            )
    return TrainConfig(**merged)


#: settings with a fixed set of values
CHOICES = {"strategy": ("ddp", "fsdp"), "optimizer": ("adamw", "sgd")}


def load_recipe(recipe: str) -> dict[str, Any]:
    """A recipe file path or a shipped recipe name (``simplevit``)."""
    path = Path(recipe)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        folder = resources.files("vitgraph.specs") / "recipes"
        shipped = folder / f"{recipe}.yaml"
        if not shipped.is_file():
            names = [p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")]
            raise ValueError(
                f"no recipe '{recipe}'{did_you_mean(recipe, names)}; shipped: "
                f"{', '.join(sorted(names))}"
            )
        text = shipped.read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"recipe {recipe} must be a mapping of training settings")
    data.pop("paper", None)
    return data
