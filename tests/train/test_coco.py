"""The COCO data source and the shipped digit-boxes set (vitgraph/train/data/coco.py):
boxes normalised by the valid part of the letterboxed image, and a located error (file
and annotation id) for a box outside its image or degenerate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vitgraph.train.data import DataError, load_data
from vitgraph.train.data.coco import write_digit_boxes


@pytest.fixture(scope="module")
def digit_boxes(tmp_path_factory) -> Path:
    return write_digit_boxes(tmp_path_factory.mktemp("digits") / "set", images=20, size=48)


def test_the_digit_boxes_set_loads_as_coco_with_ten_classes_and_boxes_inside_the_images(
    digit_boxes,
):
    data = load_data(str(digit_boxes), (3, 48, 48))
    assert data.source == "coco" and data.classes == [str(d) for d in range(10)]
    assert (len(data.train), len(data.val)) == (16, 4)
    images, masks, targets = data.train.batch(torch.arange(4), "cpu")
    assert images.shape == (4, 3, 48, 48) and masks.all()
    for target in targets:
        boxes = target["boxes"]
        assert 1 <= len(boxes) <= 3 and len(target["labels"]) == len(boxes)
        assert ((boxes[:, :2] - boxes[:, 2:] / 2) >= 0).all()
        assert ((boxes[:, :2] + boxes[:, 2:] / 2) <= 1 + 1e-6).all()


def test_a_wide_image_is_letterboxed_and_its_boxes_normalised_by_its_own_size(
    digit_boxes, tmp_path
):
    from PIL import Image

    folder = tmp_path / "wide"
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (96, 48), (200, 200, 200)).save(folder / "images" / "a.png")
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 96, "height": 48}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [48, 12, 24, 24]}],
        "categories": [{"id": 3, "name": "three"}],
    }
    for split in ("train", "val"):
        (folder / f"{split}.json").write_text(json.dumps(doc))
    data = load_data(str(folder), (3, 48, 48))
    _, masks, targets = data.train.batch(torch.arange(1), "cpu")
    assert masks[0, :24].all() and not masks[0, 24:].any()  # 96x48 -> 48x24, top-left
    torch.testing.assert_close(targets[0]["boxes"], torch.tensor([[0.625, 0.5, 0.25, 0.5]]))
    assert targets[0]["labels"].tolist() == [0]


@pytest.mark.parametrize(
    ("bbox", "message"),
    [
        ([40, 10, 20, 10], "lies outside the 48x48 image"),
        ([-1, 10, 20, 10], "lies outside the 48x48 image"),
        ([10, 10, 0, 10], "is degenerate (width and height must be > 0)"),
    ],
)
def test_a_bad_box_names_the_file_and_the_annotation_id(digit_boxes, tmp_path, bbox, message):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "images").symlink_to(digit_boxes / "images")
    doc = json.loads((digit_boxes / "train.json").read_text())
    doc["annotations"][2]["bbox"] = bbox
    (folder / "train.json").write_text(json.dumps(doc))
    (folder / "val.json").write_text((digit_boxes / "val.json").read_text())
    ann_id = doc["annotations"][2]["id"]
    with pytest.raises(DataError) as info:
        load_data(str(folder), (3, 48, 48))
    text = str(info.value)
    assert text.startswith(f"{folder / 'train.json'}: annotation id {ann_id} (image '")
    assert message in text and str(bbox) in text
