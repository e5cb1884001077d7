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


def test_the_canvases_draw_light_ink_on_dark_as_the_digits_source_does(digit_boxes):
    """A backbone pretrained on ``--data digits`` (ink bright, background black) must see
    digits of the same polarity on the canvases: drawn dark on light (as they once were)
    its classifier read 6% of the canvases' digits right (0.83 inverted)."""
    from vitgraph.train.data.digits import load_digits

    digits = load_digits((1, 8, 8)).train.images.float()
    ink = digits >= 128
    assert digits[ink].mean() > 200 > 20 > digits[~ink].mean()
    data = load_data(str(digit_boxes), (3, 48, 48))
    for k in range(len(data.train)):
        grey = data.train.images[k].float().mean(0)
        inside = torch.zeros_like(grey, dtype=torch.bool)
        for cx, cy, w, h in data.train.targets[k]["boxes"].mul(48).tolist():
            inside[round(cy - h / 2) : round(cy + h / 2), round(cx - w / 2) : round(cx + w / 2)] = 1
        assert grey[inside].max() > grey[~inside].mean() + 80


def test_the_evaluator_scores_the_ground_truth_one_and_a_shifted_label_zero(digit_boxes):
    """COCO mAP through the same label -> category id path as training: the ground truth
    as predictions scores 1, the same boxes one class off score 0."""
    from vitgraph.train.coco_eval import coco_map

    val = load_data(str(digit_boxes), (3, 48, 48)).val

    def predictions(shift: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        found = []
        for target in val.targets:
            logits = torch.full((5, 11), -10.0)
            logits[:, 10] = 10.0  # "no object"
            boxes = torch.full((5, 4), 0.5)
            for q, (label, box) in enumerate(zip(target["labels"], target["boxes"], strict=True)):
                logits[q, 10] = -10.0
                logits[q, (int(label) + shift) % 10] = 10.0
                boxes[q] = box
            found.append((logits, boxes))
        return found

    assert coco_map(val, predictions(0)) == pytest.approx({"val_map": 1.0, "val_map50": 1.0})
    assert coco_map(val, predictions(1)) == {"val_map": 0.0, "val_map50": 0.0}


def test_the_held_out_canvases_draw_the_digits_that_the_digits_source_holds_out():
    """Val canvases and val patches carry handwriting that no training canvas, training
    patch or ``--data digits`` classifier saw."""
    from vitgraph.train.data.coco import _glyphs
    from vitgraph.train.data.digits import load_digits

    digits = load_digits((1, 8, 8))
    for held_out, split in ((False, digits.train), (True, digits.val)):
        glyphs, labels = _glyphs(held_out)
        assert torch.equal((glyphs * 255).round().to(torch.uint8)[:, None], split.images)
        assert torch.equal(labels, split.labels)


def test_digit_patches_are_an_image_class_folder_the_classifier_reads(tmp_path):
    from vitgraph.train.data.coco import write_digit_patches

    data = load_data(str(write_digit_patches(tmp_path / "patches", images=60)), (3, 32, 32))
    assert data.classes == [str(d) for d in range(10)]
    assert (len(data.train), len(data.val)) == (48, 12)
