"""scikit-image's bundled colour photos as clean RGB crops (``--data photo_crops``): real
images that ship with a package, for image restoration trained offline (IPT's objective
degrades them on the fly). The photos are halved (so a crop holds structure, not only
texture) and cut into crops of the requested size, half-overlapping; the last photo's
crops are held out whole, so the held-out crops come from a photo never trained on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitgraph.train.data.base import DataError, DataRequest, Dataset, Split, data_source

#: training photos, then the held-out one (skimage.data; no network needed)
TRAIN = ("astronaut", "coffee", "chelsea", "rocket")
HELD_OUT = "immunohistochemistry"


def photo_crops(name: str, side: int, stride: int) -> torch.Tensor:
    """``(N, 3, side, side)`` uint8 crops every ``stride`` pixels of the halved photo."""
    try:
        from skimage import data as photos
    except ImportError:
        raise DataError("--data photo_crops needs scikit-image: pip install scikit-image") from None
    photo = torch.as_tensor(getattr(photos, name)()[..., :3]).permute(2, 0, 1)[None].float()
    photo = F.interpolate(photo, scale_factor=0.5, mode="bicubic", antialias=True)
    cut = photo.clamp(0, 255).round().byte().unfold(2, side, stride).unfold(3, side, stride)
    return cut.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, side, side)


@data_source("photo_crops")
def _photo_crops(location: str, request: DataRequest) -> Dataset:
    channels, height, width = request.shape
    if channels != 3 or height != width:
        raise DataError(
            f"--data photo_crops gives square RGB crops, but the spec asks for {request.shape}"
        )
    train = torch.cat([photo_crops(name, height, height // 2) for name in TRAIN])
    val = photo_crops(HELD_OUT, height, height)
    labels = torch.cat(
        [torch.full((len(photo_crops(n, height, height // 2)),), i) for i, n in enumerate(TRAIN)]
    )
    return Dataset(
        Split(train, labels),
        Split(val, torch.full((len(val),), len(TRAIN))),
        [*TRAIN, HELD_OUT],
        "photo_crops",
    )
