"""What every training data source gives: a ``Dataset`` of a train and a val ``Split``,
and ``DataError`` for data that cannot be used; the registry of sources.

A source is a one-file plugin in this package, registered with ``@data_source(name)``;
``--data NAME`` picks it, and a path is offered to each source's ``accepts`` in turn (an
image folder, later a COCO folder). The image classification sources (``digits.py``,
``folder.py``) give uint8 images ``(N, C, H, W)`` at the spec's input size, held in memory
(the intended use is small data sets and tests; a large data set wants a streaming
loader).
Every problem that would only show up mid-training — an empty folder, an unreadable
image, a single class, an image smaller than the patch — is a :class:`DataError`
raised before the first step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


class DataError(ValueError):
    """The training data cannot be used (raised before training starts)."""


@dataclass
class Split:
    """Images ``(N, C, H, W)`` uint8 and labels ``(N,)`` int64; or, for a spec that takes
    integer ids (``ids=True``), id sequences ``(N, L)`` int64 in ``images``."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: bool = False
    #: per-channel mean and std of the normalisation, in [0, 1] units (the trainer sets
    #: the spec's ``data:`` block; 0.5 and 0.5 map [0, 255] to [-1, 1])
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(
        self,
        idx: torch.Tensor,
        device: str,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)`` of the samples ``idx`` on ``device``: images augmented one
        by one (uint8), then normalised."""
        images = self.images[idx]
        if self.ids:  # sequences: no augmentation, no normalisation
            return images.to(device), self.labels[idx].to(device)
        if augment is not None:
            images = torch.stack([augment(img) for img in images])
        return normalize(images, self.mean, self.std).to(device), self.labels[idx].to(device)


@dataclass
class Dataset:
    train: Split
    val: Split
    classes: list[str]
    source: str
    #: the colours of the ids ``(vocab, C)`` in [-1, 1], for id sequences quantised by
    #: a fitted palette (None: images, or ids that are grey levels)
    palette: torch.Tensor | None = None
    #: the images' size as the data ships them ``(height, width)``, before resizing to
    #: the spec's input (None: unknown or varied)
    native: tuple[int, int] | None = None


@dataclass(frozen=True)
class DataRequest:
    """What a source is asked for: the spec's input shape, its patch (an image smaller
    than the patch is refused), the held-out fraction and the split's seed."""

    shape: tuple[int, ...]
    patch: int | None = None
    val_fraction: float = 0.2
    seed: int = 0
    #: the spec takes integer ids of this vocabulary (a generative model), not images
    vocab: int | None = None


@dataclass(frozen=True)
class DataSource:
    """A registered source: ``load(location, request)``; ``accepts(location)`` says
    whether a path given as ``--data`` is this source's (None: only by name)."""

    name: str
    load: Callable[[str, DataRequest], Dataset]
    accepts: Callable[[str], bool] | None = None


SOURCES: dict[str, DataSource] = {}


def data_source(
    name: str, accepts: Callable[[str], bool] | None = None
) -> Callable[[Callable[[str, DataRequest], Dataset]], Callable[[str, DataRequest], Dataset]]:
    """Register a data source's loader under ``name``."""

    def declare(
        load: Callable[[str, DataRequest], Dataset],
    ) -> Callable[[str, DataRequest], Dataset]:
        if name in SOURCES:
            raise RuntimeError(f"data source '{name}' is registered twice")
        SOURCES[name] = DataSource(name, load, accepts)
        return load

    return declare


def normalize(
    images: torch.Tensor, mean: tuple[float, ...] = (0.5,), std: tuple[float, ...] = (0.5,)
) -> torch.Tensor:
    """uint8 ``[0, 255]`` ``(N, C, H, W)`` -> float ``(x / 255 - mean) / std`` per channel
    (the default maps to ``[-1, 1]``)."""
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return images.float().div_(255.0).sub_(m).div_(s)


def _resize(images: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Float images ``(N, c, h, w)`` in [0, 255] -> uint8 ``(N, C, H, W)`` (bilinear;
    one channel is repeated to C)."""
    channels, height, width = shape
    if images.shape[1] == 1 and channels != 1:
        images = images.expand(-1, channels, -1, -1)
    elif images.shape[1] != channels:
        raise DataError(f"images have {images.shape[1]} channels, the spec takes {channels}")
    if images.shape[-2:] != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
    return images.round().clamp_(0, 255).to(torch.uint8)


def _split(
    images: torch.Tensor, labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[Split, Split]:
    """A seeded held-out split, stratified so every class is in both parts."""
    generator = torch.Generator().manual_seed(seed)
    train_idx, val_idx = [], []
    for cls in labels.unique(sorted=True):
        members = (labels == cls).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        held = max(1, round(len(members) * val_fraction)) if len(members) > 1 else 0
        val_idx.append(members[:held])
        train_idx.append(members[held:])
    tr, va = torch.cat(train_idx).sort().values, torch.cat(val_idx).sort().values
    ids = not images.is_floating_point() and images.dtype != torch.uint8
    return Split(images[tr], labels[tr], ids), Split(images[va], labels[va], ids)
