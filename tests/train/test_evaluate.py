"""``vitgraph eval``: a spec with weights on an image folder gives the numbers of timm's
own evaluation pieces (``resolve_data_config``, ``create_transform``,
``timm.utils.accuracy``) for the same folder and weights; a training checkpoint gives the
numbers its training log ended with. The folder is made of crops of real photos that ship
with scikit-image and scikit-learn, of several sizes and aspect ratios, so the resize and
the centre crop matter."""

from __future__ import annotations

import json

import pytest
import torch

import vitgraph
from tests.helpers import redraw_
from tests.train.conftest import CROPS, PHOTOS
from vitgraph.cli import main
from vitgraph.train.checkpoint import load_checkpoint, rebuild_graph
from vitgraph.train.evaluate import eval_transform, folder_images, transform_for

timm = pytest.importorskip("timm")
PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", depth=1, img_size=48, num_classes=len(PHOTOS))
    return redraw_(model).eval()


def _timm_numbers(model, root) -> tuple[float, float, torch.Tensor]:
    """timm's validate.py, reduced to its pieces: the data config and transform of the
    model, torchvision's ImageFolder order, timm's accuracy (in percent)."""
    from timm.data import create_transform, resolve_data_config
    from timm.utils import accuracy
    from torchvision.datasets import ImageFolder

    # timm keeps the registered 224 in pretrained_cfg when built at another img_size
    size = (3, *model.patch_embed.img_size)
    transform = create_transform(**resolve_data_config({"input_size": size}, model=model))
    data = ImageFolder(str(root), transform=transform)
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.tensor(data.targets)
    with torch.no_grad():
        logits = model(images)
    top1, top5 = accuracy(logits, labels, topk=(1, 5))
    return float(top1) / 100, float(top5) / 100, images


def test_eval_of_a_folder_gives_timms_numbers_for_the_same_weights(photo_folder, reference, capsys):
    folder = photo_folder
    twin = vitgraph.from_timm(reference).eval()
    top1, top5, timm_images = _timm_numbers(reference, folder)
    # the same tensors, image for image, as timm's transform (bicubic, crop 0.9 ...)
    files, classes = folder_images(folder)
    assert classes == sorted(PHOTOS) and len(files) == len(PHOTOS) * len(CROPS)
    prepare = transform_for(twin)
    ours = torch.stack([prepare(PIL.open(path)) for path, _ in files])
    torch.testing.assert_close(ours, timm_images, atol=1e-6, rtol=0)
    weights = folder / "twin.safetensors"
    vitgraph.save_weights(twin, twin.vitgraph_graph, weights)
    # from a spec file (the twin's, written out, with timm's data config) and the weights
    spec = folder / "twin.yaml"
    spec.write_text(rebuild_graph(load_checkpoint(weights).meta).to_yaml())
    code = main(["eval", str(spec), "--weights", str(weights), "--data", str(folder), "--json"])
    assert code == 0
    by_spec = json.loads(capsys.readouterr().out)
    # from the weights file alone: its spec travels in its metadata
    assert main(["eval", str(weights), "--data", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == by_spec
    numbers = by_spec
    assert numbers["images"] == 21 and numbers["classes"] == 7
    assert numbers["top1"] == pytest.approx(top1, abs=1e-6)  # timm: float32 percent
    assert numbers["top5"] == pytest.approx(top5, abs=1e-6)
    assert 0 < numbers["top5"] < 1  # a re-drawn model: the numbers are not trivial


@pytest.mark.parametrize("size", [(48, 64), (64, 40)])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_a_non_square_input_is_resized_and_cropped_as_timm(photo_folder, size, interpolation):
    folder = photo_folder
    from timm.data.transforms_factory import transforms_imagenet_eval

    theirs = transforms_imagenet_eval(size, crop_pct=0.95, interpolation=interpolation)
    ours = eval_transform(
        size, 3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.95,
        interpolation=interpolation,
    )  # fmt: skip
    for path, _ in folder_images(folder)[0][:6]:
        image = PIL.open(path).convert("RGB")
        torch.testing.assert_close(ours(image), theirs(image), atol=1e-6, rtol=0)


def test_eval_of_a_checkpoint_gives_the_numbers_its_training_log_ended_with(tmp_path, capsys):
    result = vitgraph.train(
        "vit",
        overrides={"image_size": 8, "patch": 4, "dim": 16, "depth": 1, "heads": 2},
        data="digits",
        epochs=1,
        batch_size=64,
        out=str(tmp_path),
        progress=False,
        log=lambda line: None,
    )
    assert main(["eval", str(tmp_path / "last.safetensors"), "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["val_accuracy"] == result.history[-1]["val_accuracy"]
    assert numbers["epoch"] == 1 and numbers["data"] == "digits"


def test_eval_without_data_or_with_too_many_classes_says_what_to_give(photo_folder, capsys):
    folder = photo_folder
    assert main(["eval", "vit_ti_16"]) == 1
    assert "--data DIR is needed" in capsys.readouterr().err
    args = ["eval", "vit", "--set", "depth=1", "--set", "classes=3", "--data", str(folder)]
    assert main(args) == 1
    assert "the folder has 7 classes but the model predicts 3" in capsys.readouterr().err


def test_predict_names_imagenet_classes_for_a_1000_class_head(photo_folder, tmp_path, capsys):
    folder = photo_folder
    graph = vitgraph.load("vit_ti_16", overrides={"image_size": 32, "depth": 1})
    model = graph.build()
    with torch.no_grad():  # class 1 wins whatever the image
        model.state_dict()["head.bias"][1] = 100.0
    vitgraph.save_weights(model, graph, tmp_path / "w.safetensors")
    image = str(folder_images(folder)[0][0][0])
    argv = ["predict", "vit_ti_16", image, "--set", "image_size=32", "--set", "depth=1"]
    assert main([*argv, "--weights", str(tmp_path / "w.safetensors")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    assert lines[0] == "1.0000  goldfish, Carassius auratus"
