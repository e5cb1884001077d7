"""scikit-learn's handwritten digits: real images that ship with a package, so training
runs offline anywhere (``--data digits``)."""

from __future__ import annotations

import torch

from vitgraph.train.data.base import DataRequest, Dataset, _resize, _split, data_source


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
    return Dataset(train, val, [str(d) for d in range(10)], "digits")


@data_source("digits")
def _digits(location: str, request: DataRequest) -> Dataset:
    return load_digits(
        request.shape, patch=request.patch, val_fraction=request.val_fraction, seed=request.seed
    )
