"""Training tests run tiny models: one intra-op thread (a second only adds contention on
a shared 2-core box), given back after each test. ``photo_folder``: an image folder of
real photos that ship with scikit-image and scikit-learn."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: (photo, crops as (top, left, height, width)): tall, wide and square crops
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "china", "flower")
CROPS = ((0, 0, 300, 200), (40, 10, 120, 250), (100, 100, 90, 90))


def _photo(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    skimage_data = pytest.importorskip("skimage.data")
    return getattr(skimage_data, name)()


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Crops of real photos (scikit-image's and scikit-learn's), one class per photo,
    tall, wide and square, as PNG and JPEG."""
    PIL = pytest.importorskip("PIL.Image")
    root = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        image = _photo(name)
        (root / name).mkdir()
        for i, (top, left, height, width) in enumerate(CROPS):
            crop = PIL.fromarray(image[top : top + height, left : left + width])
            crop.save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")  # grey camera too
    return root
