"""scikit-image's bundled colour photos as id sequences (``--data photos``): real images
that ship with a package, for a pixels-as-sequences model trained offline.

Each photo is cut into square tiles of the spec's grid; the tiles' pixels, scaled to
[-1, 1], are quantised by a palette of the spec's vocabulary fitted by k-means on the
training tiles (``vitgraph.train.palette``; iGPT §3.1). A tile's label is its photo.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vitgraph.train.data.base import DataError, DataRequest, Dataset, _split, data_source
from vitgraph.train.palette import fit_palette, nearest

#: scikit-image's colour photos (skimage.data)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
#: tiles per photo side
TILES = 8


def photo_tiles(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every photo as TILES x TILES tiles of ``side`` pixels: ``(N, side, side, 3)`` in
    [-1, 1] and each tile's photo index."""
    try:
        from skimage import data as photos
    except ImportError:
        raise DataError("--data photos needs scikit-image: pip install scikit-image") from None
    tiles, labels = [], []
    for index, name in enumerate(PHOTOS):
        image = torch.as_tensor(getattr(photos, name)()[..., :3]).permute(2, 0, 1).float()
        short = min(image.shape[1:])
        top, left = (image.shape[1] - short) // 2, (image.shape[2] - short) // 2
        square = image[None, :, top : top + short, left : left + short]
        small = F.interpolate(square, size=side * TILES, mode="bilinear", antialias=True)
        cut = small[0].unfold(1, side, side).unfold(2, side, side)  # (3, T, T, side, side)
        tiles.append(cut.permute(1, 2, 3, 4, 0).reshape(-1, side, side, 3))
        labels.append(torch.full((TILES * TILES,), index))
    pixels = torch.cat(tiles).div(127.5).sub(1.0).clamp(-1, 1)
    return pixels, torch.cat(labels)


def load_photos(length: int, vocab: int, *, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    side = math.isqrt(length)
    if side * side != length:
        raise DataError(f"--data photos gives square tiles: {length} ids is not a square")
    pixels, labels = photo_tiles(side)
    train, val = _split(torch.arange(len(labels)), labels, val_fraction, seed)
    palette = fit_palette(pixels[train.images].reshape(-1, 3), vocab, seed=seed)
    ids = nearest(pixels, palette).flatten(1)  # raster order
    train.images, val.images = ids[train.images], ids[val.images]
    train.ids = val.ids = True
    return Dataset(train, val, list(PHOTOS), "photos", palette)


@data_source("photos")
def _photos(location: str, request: DataRequest) -> Dataset:
    if request.vocab is None:
        raise DataError("--data photos gives id sequences: the spec must take ids (input: ids)")
    return load_photos(
        request.shape[0], request.vocab, val_fraction=request.val_fraction, seed=request.seed
    )
