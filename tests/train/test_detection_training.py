"""DETR trains on the shipped digit-boxes set through the ordinary loop (the detection
objective and the COCO source), resumes exactly, and — the slow target, ``make
train-detection`` — reaches an mAP@0.5 well above chance in a fixed CPU budget."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
import torch

import vitgraph
from vitgraph.train.data.coco import write_digit_boxes, write_digit_patches

pytest.importorskip("scipy")
pytest.importorskip("pycocotools")

#: a small DETR: a 4-stage ResNet of one bottleneck each, DC5 (a 4x4 map at 64 px)
TINY = {
    "image_size": 64,
    "stem": 16,
    "widths": [32, 64, 128, 256],
    "depths": [1, 1, 1, 1],
    "dc5": True,
    "dim": 64,
    "heads": 4,
    "enc_layers": 2,
    "dec_layers": 2,
    "ffn": 128,
    "queries": 8,
    "drop": 0.0,
    "act_drop": 0.0,
}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return str(write_digit_boxes(tmp_path_factory.mktemp("boxes") / "set", images=20, size=64))


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_detr_trains_an_epoch_on_digit_boxes_and_reports_coco_map(small_set):
    result = vitgraph.train(
        "detr",
        overrides=TINY,
        data=small_set,
        epochs=1,
        batch_size=8,
        lr=1e-4,
        progress=False,
        log=lambda line: None,
    )
    (stats,) = result.history
    assert math.isfinite(stats["loss"]) and stats["loss"] > 0
    assert {"loss_ce", "loss_bbox", "loss_giou", "val_map", "val_map50"} <= set(stats)
    assert result.model.vitgraph_graph.args["classes"] == 10  # sized to the data


def test_the_backbone_trains_at_a_tenth_of_the_learning_rate(small_set):
    from vitgraph.train.config import make_config
    from vitgraph.train.loop import Trainer

    config = make_config(spec="detr", overrides=TINY, data=small_set, batch_size=8, progress=False)
    trainer = Trainer(config)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    for group in trainer.optimizer.param_groups:
        for param in group["params"]:
            backbone = names[id(param)].split(".")[0] in (
                "backbone",
                "layer1",
                "layer2",
                "layer3",
                "layer4",
            )
            assert group["lr_scale"] == (0.1 if backbone else 1.0), names[id(param)]


@pytest.mark.parametrize("variant", ["deformable_detr", "deformable_detr_two_stage"])
def test_deformable_detr_trains_offsets_and_reference_points_at_the_official_tenth(
    small_set, variant
):
    from vitgraph.train.config import make_config
    from vitgraph.train.loop import Trainer

    overrides = {**DEFORMABLE_TINY, "dim": 32, "heads": 2, "ffn": 64}
    config = make_config(
        spec=variant, overrides=overrides, data=small_set, batch_size=8, progress=False
    )
    trainer = Trainer(config)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    slow = {"sampling_offsets", "reference_points"}  # official lr_linear_proj_names
    seen = set()
    for group in trainer.optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            backbone = name.split(".")[0] in ("backbone", "layer1", "layer2", "layer3", "layer4")
            projection = slow & set(name.split("."))
            seen |= projection
            assert group["lr_scale"] == (0.1 if backbone or projection else 1.0), name
    assert seen == (slow - {"reference_points"} if "two_stage" in variant else slow)


def test_a_detr_run_killed_after_epoch_one_and_resumed_ends_with_the_same_weights(
    small_set, tmp_path
):
    common = dict(
        data=small_set,
        epochs=2,
        batch_size=8,
        lr=1e-4,
        grad_clip=0.1,
        progress=False,
        log=lambda line: None,
    )
    spec = {**TINY, "drop": 0.1}
    whole = vitgraph.train("detr", overrides=spec, out=str(tmp_path / "whole"), **common)
    vitgraph.train("detr", overrides=spec, out=str(tmp_path / "cut"), stop_after=1, **common)
    torch.manual_seed(1234)
    resumed = vitgraph.train(
        resume=str(tmp_path / "cut" / "last.safetensors"), progress=False, log=lambda line: None
    )
    a, b = _weights(whole.model), _weights(resumed.model)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


@pytest.mark.slow
def test_detr_reaches_map50_on_held_out_digit_boxes_in_ten_cpu_minutes(tmp_path, capsys):
    """DETR's recipe at a small scale (``make train-detection``): its ResNet first trained
    as a classifier of one-digit patches drawn as the canvases (DETR starts from an
    ImageNet classifier, §3.2), then DETR with the backbone at a tenth of the learning
    rate, frozen BatchNorm, gradient clipping 0.1, AdamW, loss weights 1/5/2 and
    no-object 0.1. The val canvases carry handwriting no training image showed. Threads:
    the trainer's choice (2 on an idle 2-core machine, 1 when the load leaves one core:
    a second thread then spins against other processes)."""
    boxes = str(write_digit_boxes(tmp_path / "set", images=CANVASES, size=64))
    patches = str(write_digit_patches(tmp_path / "patches", images=PATCHES, size=32))
    start = time.perf_counter()
    backbone = {k: TINY[k] for k in ("stem", "widths", "depths", "dc5")}
    vitgraph.train(
        str(EXAMPLES / "detr_backbone_classifier.yaml"),
        overrides={**backbone, "image_size": 32},
        data=patches,
        epochs=5,
        batch_size=32,
        lr=2e-3,
        out=str(tmp_path / "backbone"),
        progress=False,
    )
    result = vitgraph.train(
        "detr",
        overrides={**TINY, "dim": 128, "heads": 8, "ffn": 256},
        data=boxes,
        epochs=EPOCHS,
        batch_size=8,
        lr=2e-4,
        min_lr=1e-5,
        weight_decay=1e-4,
        warmup_epochs=1,
        grad_clip=0.1,
        backbone_lr=0.1,
        init_from=str(tmp_path / "backbone" / "model.safetensors"),
        progress=False,
    )
    elapsed = time.perf_counter() - start
    best = max(h["val_map50"] for h in result.history)
    load = os.getloadavg()[0]
    with capsys.disabled():
        print(
            f"\ndigit boxes: val mAP@0.5 {result.history[-1]['val_map50']:.3f} "
            f"(best {best:.3f}) in {elapsed:.0f} s of training, load average {load:.1f}"
        )
    assert result.history[-1]["val_map50"] >= MAP50


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "detection"
#: 3,200 training canvases, 800 held out; 4,000 pretraining patches
CANVASES, PATCHES = 4000, 4000
EPOCHS = 20
#: what the issue asks: well above chance. Measured (2026-12-05, 1 thread at load average
#: 11-12 from other work on the 2 cores): val mAP@0.5 0.443 (AP 0.156) after 20 epochs,
#: 841 s for pretraining and DETR together; 0.232 after 5 epochs, 0.381 after 10
MAP50 = 0.3


#: Deformable DETR at DETR's small scale: C3-C5 of the same ResNet (8x8, 4x4, 2x2 at
#: 64 px: a fourth, strided level would be 1x1), the same transformer sizes and queries
DEFORMABLE_TINY = {
    **{k: TINY[k] for k in ("image_size", "stem", "widths", "depths", "queries")},
    "levels": 3,
    "dim": 128,
    "heads": 8,
    "enc_layers": 2,
    "dec_layers": 2,
    "ffn": 256,
    "drop": 0.0,
    "act_drop": 0.0,
    "attn_drop": 0.0,
}


def test_deformable_detr_trains_an_epoch_on_digit_boxes_with_the_focal_criterion(small_set):
    result = vitgraph.train(
        "deformable_detr",
        overrides={**DEFORMABLE_TINY, "dim": 32, "heads": 2, "ffn": 64},
        data=small_set,
        epochs=1,
        batch_size=8,
        lr=1e-4,
        progress=False,
        log=lambda line: None,
    )
    (stats,) = result.history
    assert math.isfinite(stats["loss"]) and stats["loss"] > 0
    assert {"loss_ce", "loss_bbox", "loss_giou", "val_map50"} <= set(stats)
    model = result.model
    assert model.vitgraph_graph.args["classes"] == 10
    assert model.head.class_embed[0].out_features == 10  # per-class sigmoids, no "no object"


@pytest.mark.slow
def test_deformable_detr_beats_detr_on_held_out_digit_boxes_at_the_same_budget(tmp_path, capsys):
    """``make train-deformable-detr``: the backbone pretrained once on the patches (as
    above), then DETR and Deformable DETR with the same recipe, epochs and batches (the
    official Deformable DETR recipe is DETR's: AdamW 2e-4, backbone at 0.1, clip 0.1),
    each timed. Deformable DETR's multi-scale memory (84 tokens against DETR's 16) and
    focal criterion should find the digits better in the same budget."""
    boxes = str(write_digit_boxes(tmp_path / "set", images=CANVASES, size=64))
    patches = str(write_digit_patches(tmp_path / "patches", images=PATCHES, size=32))
    backbone = {k: TINY[k] for k in ("stem", "widths", "depths", "dc5")}
    vitgraph.train(
        str(EXAMPLES / "detr_backbone_classifier.yaml"),
        overrides={**backbone, "image_size": 32},
        data=patches,
        epochs=5,
        batch_size=32,
        lr=2e-3,
        out=str(tmp_path / "backbone"),
        progress=False,
    )
    recipe = dict(
        data=boxes,
        epochs=EPOCHS,
        batch_size=8,
        lr=2e-4,
        min_lr=1e-5,
        weight_decay=1e-4,
        warmup_epochs=1,
        grad_clip=0.1,
        backbone_lr=0.1,
        init_from=str(tmp_path / "backbone" / "model.safetensors"),
        progress=False,
    )
    found, histories = {}, {}
    for spec, overrides in (
        ("detr", {**TINY, "dim": 128, "heads": 8, "ffn": 256}),
        ("deformable_detr", DEFORMABLE_TINY),
    ):
        start = time.perf_counter()
        result = vitgraph.train(spec, overrides=overrides, **recipe)
        found[spec] = (result.history[-1]["val_map50"], time.perf_counter() - start)
        histories[spec] = result.history
    # the same CPU budget: Deformable DETR's mAP after the last of its epochs that ended
    # within DETR's whole training time (each epoch's time from the images/s it logged)
    budget = training_seconds(histories["detr"])[-1]
    deformable = histories["deformable_detr"]
    spent = training_seconds(deformable)
    within = [stats for stats, t in zip(deformable, spent, strict=True) if t <= budget]
    load = os.getloadavg()[0]
    with capsys.disabled():
        for spec, (map50, seconds) in found.items():
            print(f"\n{spec}: val mAP@0.5 {map50:.3f} in {seconds:.0f} s", end="")
        print(
            f"\nwithin DETR's {budget:.0f} s of training: Deformable DETR's epoch "
            f"{within[-1]['epoch']}, val mAP@0.5 {within[-1]['val_map50']:.3f}"
            f"\n(load average {load:.1f})"
        )
    assert found["deformable_detr"][0] > found["detr"][0]
    assert within[-1]["val_map50"] > found["detr"][0]


def training_seconds(history: list[dict]) -> list[float]:
    """The training time at the end of each epoch (80% of the canvases per epoch, at the
    images/s the epoch logged; evaluation not counted)."""
    total, out = 0.0, []
    for stats in history:
        total += 0.8 * CANVASES / stats["images_per_second"]
        out.append(total)
    return out
