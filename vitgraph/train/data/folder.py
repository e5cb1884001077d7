"""A folder of images, one sub-folder per class (torchvision's ImageFolder layout), with
``train/`` and ``val/`` sub-folders as the splits when both exist (``--data PATH``)."""

from __future__ import annotations

from pathlib import Path

import torch

from vitgraph.train.data.base import (
    DataError,
    DataRequest,
    Dataset,
    Split,
    _resize,
    _split,
    data_source,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


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
    root: Path, shape: tuple[int, ...], patch: int | None, classes: list[str] | None = None
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
    shape: tuple[int, ...],
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


@data_source("folder", accepts=lambda location: Path(location).is_dir())
def _folder(location: str, request: DataRequest) -> Dataset:
    return load_folder(
        location,
        request.shape,
        patch=request.patch,
        val_fraction=request.val_fraction,
        seed=request.seed,
    )
