"""Training data: a folder of images (one sub-folder per class) or scikit-learn's digits.

Both become uint8 tensors ``(N, C, H, W)`` at the spec's input size, held in memory (the
intended use is small data sets and tests; a large data set wants a streaming loader).
Every problem that would only show up mid-training — an empty folder, an unreadable
image, a single class, an image smaller than the patch — is a :class:`DataError`
raised before the first step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class DataError(ValueError):
    """The training data cannot be used (raised before training starts)."""


@dataclass
class Split:
    """Images ``(N, C, H, W)`` uint8 and labels ``(N,)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Dataset:
    train: Split
    val: Split
    classes: list[str]
    source: str


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float ``[-1, 1]`` (mean 0.5, std 0.5 per channel)."""
    return images.float().div_(127.5).sub_(1.0)


def _resize(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
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
    return Split(images[tr], labels[tr]), Split(images[va], labels[va])


def load_digits(
    shape: tuple[int, int, int],
    *,
    patch: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """scikit-learn's 1,797 8x8 handwritten digits (values 0-16), upsampled to ``shape``
    (deliberately, so no patch-size check: ``patch`` is accepted for a uniform call)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)[:, None] * (255.0 / 16.0)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    train, val = _split(_resize(images, shape), labels, val_fraction, seed)
    return Dataset(train, val, [str(d) for d in range(10)], "digits")


def _check_patch(height: int, width: int, patch: int, what: str) -> None:
    if min(height, width) < patch:
        raise DataError(
            f"{what} is {height}x{width}, smaller than the spec's {patch}x{patch} "
            "patch; upsampling it would invent the whole patch — use larger "
            "images or a smaller patch (--set patch=...)"
        )


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_folder(
    root: Path, shape: tuple[int, int, int], patch: int | None, classes: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from PIL import Image, UnidentifiedImageError

    dirs = _class_dirs(root)
    names = [d.name for d in dirs]
    if classes is not None and names != classes:
        raise DataError(f"{root} has classes {names}, but the training folder has {classes}")
    files = [
        (i, f)
        for i, d in enumerate(dirs)
        for f in sorted(d.rglob("*"))
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise DataError(
            f"data folder {root} has no images: it needs one sub-folder per class "
            f"with image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    counts = {names[i]: 0 for i in range(len(names))}
    for i, _ in files:
        counts[names[i]] += 1
    with_images = [n for n, c in counts.items() if c]
    if len(with_images) < 2:
        raise DataError(
            f"data folder {root} has only one class with images "
            f"({with_images[0]!r}); classification needs at least 2"
        )
    mode = "L" if shape[0] == 1 else "RGB"
    tensors = []
    for _, path in files:
        try:
            with Image.open(path) as img:
                img.load()
                width, height = img.size
                if patch is not None:
                    _check_patch(height, width, patch, f"image {path}")
                pixels = torch.frombuffer(bytearray(img.convert(mode).tobytes()), dtype=torch.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"cannot read image {path}: {exc}") from None
        image = pixels.view(height, width, -1).permute(2, 0, 1).float()[None]
        tensors.append(_resize(image, shape)[0])
    labels = torch.tensor([i for i, _ in files], dtype=torch.int64)
    return torch.stack(tensors), labels, names


def load_folder(
    root: str | Path,
    shape: tuple[int, int, int],
    *,
    patch: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """``root/<class>/*.png``; with ``root/train`` and ``root/val`` folders those are the
    splits, otherwise ``val_fraction`` of each class is held out (seeded)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if (root / "train").is_dir() and (root / "val").is_dir():
        images, labels, names = _read_folder(root / "train", shape, patch)
        val_images, val_labels, _ = _read_folder(root / "val", shape, patch, names)
        return Dataset(Split(images, labels), Split(val_images, val_labels), names, str(root))
    images, labels, names = _read_folder(root, shape, patch)
    train, val = _split(images, labels, val_fraction, seed)
    return Dataset(train, val, names, str(root))


def load_data(
    data: str,
    shape: tuple[int, int, int],
    *,
    patch: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """``"digits"`` or a folder path."""
    if data == "digits":
        return load_digits(shape, patch=patch, val_fraction=val_fraction, seed=seed)
    return load_folder(data, shape, patch=patch, val_fraction=val_fraction, seed=seed)
