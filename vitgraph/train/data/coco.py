"""Object detection data in the format people have: COCO-style JSON beside an image
folder (``--data FOLDER`` holding ``train.json``, ``val.json`` and ``images/``), and
``digit_boxes``, a small real set written in that format from scikit-learn's handwritten
digits placed on canvases (``vitgraph digit-boxes OUT``), so detection trains offline.

Every image is resized to fit the spec's input (aspect kept), placed top-left and padded;
its pixel mask marks the valid part and its boxes are normalised (cx, cy, w, h) by that
part, as DETR's official transforms do. A box outside its image or degenerate (no width
or height) is a ``DataError`` naming the JSON file and the annotation id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vitgraph.train.data.base import (
    DataError,
    DataRequest,
    Dataset,
    _split,
    data_source,
    normalize,
)

Target = dict[str, torch.Tensor]


@dataclass
class DetectionSplit:
    """Images ``(N, C, H, W)`` uint8 padded to the spec's size, their valid-pixel masks
    ``(N, H, W)``, per-image targets (``labels``, normalised ``boxes``), and the COCO
    ground truth in each image's own pixels for the evaluator."""

    images: torch.Tensor
    masks: torch.Tensor
    targets: list[Target]
    coco: dict[str, Any]
    #: label index -> the JSON's category id
    category_ids: list[int] = field(default_factory=list)
    #: the normalisation's per-channel mean and std (the trainer sets the spec's)
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(
        self, idx: torch.Tensor, device: str, augment: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[Target]]:
        """``(images, pixel_masks, targets)`` of the samples ``idx`` on ``device``."""
        targets = [{k: v.to(device) for k, v in self.targets[int(i)].items()} for i in idx]
        images = normalize(self.images[idx], self.mean, self.std)
        return images.to(device), self.masks[idx].to(device), targets


def pil_to_tensor(pixels: Any) -> torch.Tensor:
    """A PIL image as uint8 ``(C, H, W)``."""
    tensor = torch.as_tensor(bytearray(pixels.tobytes()), dtype=torch.uint8)
    return tensor.view(pixels.size[1], pixels.size[0], -1).permute(2, 0, 1)


def letterbox(image: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A uint8 ``(C, h, w)`` image resized to fit ``size`` (aspect kept), top-left on a
    zero canvas, and its valid-pixel mask (True on the image)."""
    height, width = size
    scale = min(height / image.shape[1], width / image.shape[2])
    rows, cols = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[2] * scale))
    resized = F.interpolate(image[None].float(), size=(rows, cols), mode="bilinear", antialias=True)
    canvas = torch.zeros(image.shape[0], height, width, dtype=torch.uint8)
    canvas[:, :rows, :cols] = resized[0].round().clamp(0, 255).to(torch.uint8)
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[:rows, :cols] = True
    return canvas, mask


def _check_box(box: Any, image: dict[str, Any], ann: dict[str, Any], file: Path) -> None:
    where = f"{file}: annotation id {ann.get('id')} (image {image.get('file_name')!r})"
    if not (
        isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)
    ):
        raise DataError(f"{where}: bbox must be [x, y, width, height] in pixels, got {box!r}")
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise DataError(f"{where}: the box {box} is degenerate (width and height must be > 0)")
    width, height = image["width"], image["height"]
    if x < 0 or y < 0 or x + w > width + 1e-3 or y + h > height + 1e-3:
        raise DataError(
            f"{where}: the box {box} (x, y, width, height) lies outside the {width}x{height} image"
        )


def read_coco(file: Path, images_dir: Path, shape: tuple[int, ...]) -> DetectionSplit:
    """One COCO-style JSON file and its images, checked and resized to ``shape``."""
    from PIL import Image

    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{file}: not a readable COCO JSON file ({exc})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{file}: a COCO file needs a list under '{key}'")
    category_ids = sorted(c["id"] for c in data["categories"])
    label_of = {cid: k for k, cid in enumerate(category_ids)}
    by_image: dict[Any, list[dict[str, Any]]] = {img["id"]: [] for img in data["images"]}
    images_by_id = {img["id"]: img for img in data["images"]}
    for ann in data["annotations"]:
        image = images_by_id.get(ann.get("image_id"))
        if image is None:
            raise DataError(
                f"{file}: annotation id {ann.get('id')} names no image ({ann.get('image_id')!r})"
            )
        if ann.get("category_id") not in label_of:
            raise DataError(
                f"{file}: annotation id {ann.get('id')}: category {ann.get('category_id')!r} "
                f"is not in categories ({', '.join(map(str, category_ids))})"
            )
        _check_box(ann.get("bbox"), image, ann, file)
        by_image[image["id"]].append(ann)
    channels, height, width = shape
    n = len(data["images"])
    images = torch.zeros(n, channels, height, width, dtype=torch.uint8)
    masks = torch.zeros(n, height, width, dtype=torch.bool)
    targets: list[Target] = []
    for k, info in enumerate(data["images"]):
        path = images_dir / info["file_name"]
        try:
            pixels = Image.open(path).convert("RGB" if channels == 3 else "L")
        except OSError as exc:
            raise DataError(
                f"{file}: image {info['file_name']!r}: cannot read {path} ({exc})"
            ) from None
        if pixels.size != (info["width"], info["height"]):
            raise DataError(
                f"{file}: image {info['file_name']!r} is {pixels.size[0]}x{pixels.size[1]}, "
                f"the JSON says {info['width']}x{info['height']}"
            )
        images[k], masks[k] = letterbox(pil_to_tensor(pixels), (height, width))
        anns = by_image[info["id"]]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).view(-1, 4)
        boxes = torch.stack(
            (
                (boxes[:, 0] + boxes[:, 2] / 2) / info["width"],
                (boxes[:, 1] + boxes[:, 3] / 2) / info["height"],
                boxes[:, 2] / info["width"],
                boxes[:, 3] / info["height"],
            ),
            dim=1,
        )
        labels = torch.tensor([label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        targets.append({"labels": labels, "boxes": boxes})
    coco = {
        "images": [
            {k: img[k] for k in ("id", "width", "height", "file_name")} for img in data["images"]
        ],
        "annotations": [
            {
                **a,
                "area": a.get("area", a["bbox"][2] * a["bbox"][3]),
                "iscrowd": a.get("iscrowd", 0),
            }
            for a in data["annotations"]
        ],
        "categories": data["categories"],
    }
    return DetectionSplit(images, masks, targets, coco, category_ids)


def _is_coco_folder(location: str) -> bool:
    folder = Path(location)
    return (folder / "train.json").is_file() and (folder / "val.json").is_file()


@data_source("coco", accepts=_is_coco_folder)
def load_coco(location: str, request: DataRequest) -> Dataset:
    """``train.json`` and ``val.json`` beside ``images/`` (file names relative to it)."""
    if len(request.shape) != 3:
        raise DataError(f"COCO data are images; the spec takes {request.shape}")
    folder = Path(location)
    train = read_coco(folder / "train.json", folder / "images", request.shape)
    val = read_coco(folder / "val.json", folder / "images", request.shape)
    if train.category_ids != val.category_ids:
        raise DataError(f"{folder}: train.json and val.json list different categories")
    names = {c["id"]: str(c.get("name", c["id"])) for c in train.coco["categories"]}
    return Dataset(train, val, [names[c] for c in train.category_ids], "coco")  # type: ignore[arg-type]


# -- the shipped set: digits on canvases -----------------------------------------------------


#: a digit's side on a canvas, in pixels (the 8x8 glyph scaled)
SIDES = (14, 28)


def _glyphs(held_out: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits (ink in [0, 1]) and labels of one part of the split that
    ``--data digits`` makes (seed 0, a stratified fifth held out): the held-out canvases
    carry handwriting that no training canvas, patch or digits classifier saw."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    glyphs = torch.as_tensor(digits.images, dtype=torch.float32) / 16.0
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    train, val = _split(torch.arange(len(labels)), labels, 0.2, 0)
    part = (val if held_out else train).images
    return glyphs[part], labels[part]


def _colours(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A dark tinted background and light ink (the polarity of ``--data digits``)."""
    return torch.rand(3, generator=gen) * 90, 160 + torch.rand(3, generator=gen) * 95


def _draw(
    canvas: torch.Tensor, glyph: torch.Tensor, x: int, y: int, side: int, ink: torch.Tensor
) -> list[int] | None:
    """Draw an 8x8 glyph scaled to ``side`` at (x, y); the tight [x, y, w, h] box of its
    ink, or None when it has none."""
    scaled = F.interpolate(glyph[None, None], size=(side, side), mode="bilinear")[0, 0]
    scaled = scaled.clamp(0, 1)
    region = canvas[:, y : y + side, x : x + side]
    canvas[:, y : y + side, x : x + side] = region * (1 - scaled) + ink[:, None, None] * scaled
    rows = (scaled > 0.25).any(1).nonzero().flatten()
    cols = (scaled > 0.25).any(0).nonzero().flatten()
    if len(rows) == 0:
        return None
    return [
        x + int(cols[0]),
        y + int(rows[0]),
        int(cols[-1] - cols[0]) + 1,
        int(rows[-1] - rows[0]) + 1,
    ]


def _save(canvas: torch.Tensor, path: Path) -> None:
    from PIL import Image

    pixels = canvas.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()
    Image.fromarray(pixels.numpy()).save(path)


def write_digit_boxes(out: str | Path, images: int = 400, size: int = 64, seed: int = 0) -> Path:
    """Write ``images`` canvases of ``size`` px, each with 1-3 of scikit-learn's 8x8
    handwritten digits scaled to 14-28 px at random places (not overlapping), light ink
    on a dark tinted background (the polarity of ``--data digits``), as COCO JSON (the
    tight box of each digit's ink; category ids 1-10 for digits 0-9) and PNGs; 80% in
    train.json, 20% in val.json, whose digits are the held-out part of the digits."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    cut = int(round(images * 0.8))
    pools = (_glyphs(held_out=False), _glyphs(held_out=True))
    gen = torch.Generator().manual_seed(seed)
    categories = [{"id": d + 1, "name": str(d)} for d in range(10)]
    records: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    ann_id = 1
    for k in range(images):
        glyphs, labels = pools[k >= cut]
        background, ink = _colours(gen)
        canvas = background[:, None, None].expand(3, size, size).clone()
        placed: list[tuple[int, int, int]] = []
        anns = []
        for _ in range(1 + int(torch.randint(0, 3, (1,), generator=gen))):
            side = min(size, int(torch.randint(SIDES[0], SIDES[1] + 1, (1,), generator=gen)))
            for _attempt in range(20):
                x, y = (int(v) for v in torch.randint(0, size - side + 1, (2,), generator=gen))
                if all(
                    x + side <= a or a + c <= x or y + side <= b or b + c <= y for a, b, c in placed
                ):
                    break
            else:
                continue
            pick = int(torch.randint(0, len(glyphs), (1,), generator=gen))
            box = _draw(canvas, glyphs[pick], x, y, side, ink)
            if box is None:
                continue
            placed.append((x, y, side))
            anns.append(
                {
                    "id": ann_id,
                    "image_id": k + 1,
                    "category_id": int(labels[pick]) + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
            ann_id += 1
        name = f"{k:05d}.png"
        _save(canvas, out / "images" / name)
        records.append(({"id": k + 1, "file_name": name, "width": size, "height": size}, anns))
    for split, part in (("train", records[:cut]), ("val", records[cut:])):
        doc = {
            "images": [img for img, _ in part],
            "annotations": [a for _, anns in part for a in anns],
            "categories": categories,
        }
        (out / f"{split}.json").write_text(json.dumps(doc))
    return out


def write_digit_patches(out: str | Path, images: int = 4000, size: int = 32, seed: int = 0) -> Path:
    """Write ``images`` patches of ``size`` px, each one digit drawn as on the digit-boxes
    canvases (14-28 px at a random place, light ink on a dark tint; the ten digits in
    turn), as an image-class folder (``train/<digit>/``, ``val/<digit>/``: 80% and 20%,
    the val patches from the held-out digits): the set DETR's backbone is pretrained on,
    as the official DETR starts from an ImageNet classifier (§3.2). A classifier of
    plain ``--data digits`` (each digit centred, filling the frame) does not carry over:
    a linear probe of its C5 features on the canvases' digits reads 15%; after these
    patches, 76%."""
    out = Path(out)
    cut = int(round(images * 0.8))
    pools = (_glyphs(held_out=False), _glyphs(held_out=True))
    gen = torch.Generator().manual_seed(seed)
    for k in range(images):
        glyphs, labels = pools[k >= cut]
        background, ink = _colours(gen)
        canvas = background[:, None, None].expand(3, size, size).clone()
        side = min(size, int(torch.randint(SIDES[0], SIDES[1] + 1, (1,), generator=gen)))
        x, y = (int(v) for v in torch.randint(0, size - side + 1, (2,), generator=gen))
        members = (labels == k % 10).nonzero().flatten()  # the digits in turn
        pick = int(members[int(torch.randint(0, len(members), (1,), generator=gen))])
        _draw(canvas, glyphs[pick], x, y, side, ink)
        folder = out / ("train" if k < cut else "val") / str(k % 10)
        folder.mkdir(parents=True, exist_ok=True)
        _save(canvas, folder / f"{k:05d}.png")
    return out
