"""Training data: folders load with their classes; bad data is refused before training
with a message naming the problem (empty folder, unreadable image, one class only, an
image smaller than the patch)."""

import pytest
import torch
from PIL import Image

import vitgraph
from vitgraph.cli import main
from vitgraph.train.data import DataError, load_digits, load_folder

TINY = {"image_size": 16, "patch": 4, "dim": 16, "depth": 1, "heads": 2}


def _png(path, size=16, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, value, value)).save(path)


def _folder(root, classes=("cat", "dog"), per_class=5, size=16):
    for c, name in enumerate(classes):
        for i in range(per_class):
            _png(root / name / f"{i}.png", size, 40 * c + i)
    return root


def _train(data, **kw):
    return vitgraph.train(
        "vit",
        overrides=TINY,
        data=str(data),
        epochs=1,
        batch_size=2,
        progress=False,
        log=lambda line: None,
        **kw,
    )


def test_a_folder_loads_with_sorted_class_names_and_a_stratified_split(tmp_path):
    data = load_folder(_folder(tmp_path), (3, 8, 8), patch=4, val_fraction=0.2)
    assert data.classes == ["cat", "dog"]
    assert data.train.images.shape == (8, 3, 8, 8) and data.train.images.dtype == torch.uint8
    assert sorted(data.val.labels.tolist()) == [0, 1]


def test_digits_are_upsampled_to_the_spec_input_and_split_80_20():
    data = load_digits((3, 16, 16))
    assert data.train.images.shape[1:] == (3, 16, 16)
    assert len(data.train) + len(data.val) == 1797
    assert len(data.val) == 359  # 20% of each class, rounded per class


def test_an_empty_folder_is_refused_before_training(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images: it needs one sub-folder per class"):
        _train(tmp_path / "empty")


def test_an_unreadable_image_is_named_before_training(tmp_path):
    root = _folder(tmp_path / "data")
    (root / "dog" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot read image .*dog/broken\.png"):
        _train(root, out=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # nothing started


def test_a_single_class_is_refused(tmp_path):
    root = _folder(tmp_path / "data", classes=("cat",))
    (root / "dog").mkdir()  # a class folder without images does not count
    with pytest.raises(DataError, match="only one class with images \\('cat'\\)"):
        _train(root)


def test_an_image_smaller_than_the_patch_is_refused_with_both_sizes(tmp_path):
    root = _folder(tmp_path / "data")
    _png(root / "cat" / "tiny.png", size=2)
    with pytest.raises(DataError, match=r"tiny\.png is 2x2, smaller than the spec's 4x4 patch"):
        _train(root)


def test_the_cli_reports_bad_data_in_one_line_and_exits_1(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "train",
            "vit",
            "--data",
            str(tmp_path / "empty"),
            "--no-progress",
            *[f"--set={k}={v}" for k, v in TINY.items()],
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("data error: data folder") and err.count("\n") == 1


def test_the_cli_exits_2_on_a_spec_error(capsys):
    assert main(["train", "no_such_spec_anywhere", "--no-progress"]) == 2
