"""Palettes (vitgraph/train/palette.py), the photos data source and ``vitgraph palette``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitgraph.cli import main
from vitgraph.sampling import write_png
from vitgraph.train.palette import fit_palette, nearest


def test_k_means_finds_well_separated_colours_and_ids_are_the_nearest():
    centres = torch.tensor([[-0.8, -0.8, -0.8], [0.8, -0.5, 0.0], [0.0, 0.9, 0.7]])
    noise = torch.randn(3, 200, 3, generator=torch.Generator().manual_seed(0)) * 0.03
    pixels = (centres[:, None] + noise).reshape(-1, 3)
    palette = fit_palette(pixels, 3, seed=1)
    order = palette[:, 0].argsort()
    assert torch.allclose(palette[order], centres[centres[:, 0].argsort()], atol=0.01)
    brute = ((pixels[:, None] - palette[None]) ** 2).sum(-1).argmin(-1)
    assert torch.equal(nearest(pixels, palette), brute)
    assert torch.equal(fit_palette(pixels, 3, seed=1), palette)  # seeded


def test_fewer_pixels_than_colours_is_refused():
    with pytest.raises(ValueError, match="4 pixels cannot make a palette of 8 colours"):
        fit_palette(torch.zeros(4, 3), 8)


def test_the_photos_are_tiles_of_palette_ids_labelled_by_their_photo():
    pytest.importorskip("skimage")
    from vitgraph.train.data.photos import PHOTOS, load_photos

    data = load_photos(64, 16)
    assert data.train.images.dtype == torch.int64 and data.train.images.shape[1] == 64
    assert int(data.train.images.max()) < 16 and data.palette.shape == (16, 3)
    assert len(data.train) + len(data.val) == len(PHOTOS) * 64
    assert set(data.val.labels.tolist()) == set(range(len(PHOTOS)))


def test_cli_palette_fits_the_colours_of_a_folder_of_images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    red = torch.zeros(8, 8, 3, dtype=torch.uint8)
    red[..., 0] = 255
    blue = torch.zeros(8, 8, 3, dtype=torch.uint8)
    blue[..., 2] = 255
    write_png(str(folder / "red.png"), red)
    write_png(str(folder / "blue.png"), blue)
    out = tmp_path / "palette.npy"
    assert main(["palette", str(folder), "--colors", "2", "--out", str(out)]) == 0
    palette = np.load(out)
    assert palette.shape == (2, 3)
    assert sorted(map(tuple, palette.round(3).tolist())) == [(-1.0, -1.0, 1.0), (1.0, -1.0, -1.0)]
