"""Fine-tuning as timm users do it (#20 item 5): pretrained weights at another resolution
and class count (position table resampled, classifier started fresh), layer-wise
learning-rate decay grouped as timm's ``param_groups_layer_decay`` groups the reference,
a weight EMA, metrics beside the checkpoints, and an exact resume of all of it; from the
CLI, on a folder of real photos."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

import vitgraph
from tests.helpers import redraw_
from vitgraph.cli import main
from vitgraph.train.loop import parameter_groups

timm = pytest.importorskip("timm")


def _by_name(model, groups) -> dict[str, tuple[float, float]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {
        names[id(p)]: (round(g["lr_scale"], 12), g["weight_decay"])
        for g in groups
        for p in g["params"]
    }


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("vit_small_patch16_224", {"depth": 3, "img_size": 32}),
        ("deit3_small_patch16_224", {"depth": 2, "img_size": 32}),
        ("swin_tiny_patch4_window7_224", {"depths": (1, 2, 1, 1), "img_size": 112}),
    ],
)
def test_layer_decay_groups_the_twin_as_timm_groups_the_reference(name, kwargs):
    from timm.optim import param_groups_layer_decay

    reference = redraw_(timm.create_model(name, num_classes=10, **kwargs))
    twin = vitgraph.from_timm(reference)
    theirs = param_groups_layer_decay(
        reference, 0.05, no_weight_decay_list=reference.no_weight_decay(), layer_decay=0.65
    )
    ours = parameter_groups(twin, 0.05, None, 0.65)
    # timm's Swin names its classifier head.fc, the twin head (the weights map over)
    expected = {k.replace("head.fc.", "head."): v for k, v in _by_name(reference, theirs).items()}
    assert _by_name(twin, ours) == expected
    assert len({scale for scale, _ in expected.values()}) > 3  # the decay is not trivial


def _numbers(history: list[dict]) -> list[dict]:
    """A history without its timings."""
    return [{k: v for k, v in row.items() if k != "images_per_second"} for row in history]


def _train(folder, out, depth, *extra) -> dict:
    args = [
        "train", "deit_s", "--set", f"depth={depth}", "--set", "image_size=160",
        "--data", str(folder), "--epochs", "2", "--batch-size", "4", "--lr", "1e-4",
        "--warmup-epochs", "0", "--layer-decay", "0.65", "--ema-decay", "0.9",
        "--out", str(out), "--no-progress", "--json", *extra,
    ]  # fmt: skip
    assert main(args) == 0
    return args


# make test fine-tunes two blocks of DeiT-S; make parity-all the whole DeiT-S
@pytest.mark.parametrize("depth", [2, pytest.param(12, marks=pytest.mark.slow)])
def test_a_fine_tune_from_other_sizes_runs_with_llrd_and_ema_resumes_exactly_and_writes_metrics(
    photo_folder, tmp_path, capsys, depth
):
    # "pretrained": DeiT-S at 224 px with 1000 classes, saved by the CLI
    weights = tmp_path / "pretrained.safetensors"
    assert main(["build", "deit_s", "--set", f"depth={depth}", "--out", str(weights)]) == 0
    capsys.readouterr()
    settings = ("--pretrained", str(weights))
    _train(photo_folder, tmp_path / "whole", depth, *settings)
    whole = json.loads(capsys.readouterr().out)
    _train(photo_folder, tmp_path / "parts", depth, *settings, "--stop-after", "1")
    capsys.readouterr()
    checkpoint = tmp_path / "parts" / "last.safetensors"
    _train(photo_folder, tmp_path / "parts", depth, "--resume", str(checkpoint))
    resumed = json.loads(capsys.readouterr().out)
    assert _numbers(resumed["history"]) == _numbers(whole["history"])
    for file in ("model.safetensors", "model_ema.safetensors"):
        a, b = (load_file(str(tmp_path / run / file)) for run in ("whole", "parts"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the position table was resampled from 14x14 to 10x10, the head made for 7 classes
    model = load_file(str(tmp_path / "whole" / "model.safetensors"))
    assert model["pos_embed"].shape == (1, 1 + 100, 384)
    assert model["head.weight"].shape == (7, 384)
    row = whole["history"][-1]
    assert {"val_accuracy", "val_top5", "ema_val_accuracy", "ema_val_top5"} <= row.keys()
    with open(tmp_path / "parts" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["ema_val_accuracy"]) == row["ema_val_accuracy"]
    lines = (tmp_path / "parts" / "metrics.jsonl").read_text().splitlines()
    assert _numbers([json.loads(line) for line in lines]) == _numbers(whole["history"])
