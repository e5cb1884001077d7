"""scikit-learn's handwritten digits: real images that ship with a package, so training
runs offline anywhere (``--data digits``)."""

from __future__ import annotations

import torch

from vitgraph.train.data.base import (
    DataError,
    DataRequest,
    Dataset,
    _resize,
    _split,
    data_source,
)

#: the digits' grey levels: 0 (white) to 16 (black), so 17 ids
LEVELS = 17


def load_digits(
    shape: tuple[int, ...],
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
    return Dataset(train, val, [str(d) for d in range(10)], "digits", native=(8, 8))


def load_digit_sequences(
    *, val_fraction: float = 0.2, seed: int = 0, class_first: bool = False
) -> Dataset:
    """The digits as sequences for a generative model (iGPT §3 on a small scale): each
    8x8 image is 64 ids in raster order, its grey levels 0-16 as they ship (17 ids).
    ``class_first``: the digit's class (0-9) as id 0, then the 64 (a class-conditional
    model that reads its class in the sequence: the Image Transformer's)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    ids = torch.as_tensor(bunch.images, dtype=torch.int64).flatten(1)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    if class_first:
        ids = torch.cat([labels[:, None], ids], dim=1)
    train, val = _split(ids, labels, val_fraction, seed)
    return Dataset(train, val, [str(d) for d in range(10)], "digits")


@data_source("digits")
def _digits(location: str, request: DataRequest) -> Dataset:
    if request.vocab is not None:  # the spec takes ids: the digits as sequences
        if request.shape not in ((64,), (65,)) or request.vocab < LEVELS:
            raise DataError(
                f"the digits are 64 ids (8x8) of {LEVELS} grey levels, but the spec takes "
                f"{request.shape[0]} ids of {request.vocab}: set its input to "
                f"--set input.ids=64 input.vocab={LEVELS} (65 ids: the class first)"
            )
        return load_digit_sequences(
            val_fraction=request.val_fraction,
            seed=request.seed,
            class_first=request.shape == (65,),
        )
    return load_digits(
        request.shape, patch=request.patch, val_fraction=request.val_fraction, seed=request.seed
    )
