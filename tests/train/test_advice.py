"""Defaults that learn in the run asked for, and runs that say what they did: the
warm-up, threads, normalisation, a data set far below the spec's input, a finished or
stopped run."""

import os
import time

import pytest
import torch

import vitgraph
from vitgraph.train.advice import settle_batch, warmup_epochs
from vitgraph.train.config import make_config
from vitgraph.train.data import load_data

TINY = {"image_size": 16, "patch": 4, "dim": 32, "depth": 1, "heads": 2, "mlp_ratio": 2.0}


def _lines():
    lines: list[str] = []
    return lines, lines.append


@pytest.mark.parametrize(
    ("epochs", "given", "expected"),
    [(1, None, 0.1), (5, None, 0.5), (30, None, 1.0), (1, 2.0, 2.0)],
)
def test_the_default_warm_up_is_one_epoch_or_a_tenth_of_a_shorter_run(epochs, given, expected):
    assert warmup_epochs(make_config(epochs=epochs, warmup_epochs=given)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("epochs", "images", "processes", "batch", "lr"),
    [
        (1, 1438, 1, 4, 6.25e-5),  # one epoch of digits: 22 steps at 64, 359 at 4
        (5, 1438, 1, 16, 2.5e-4),  # 110 steps a run at 64, 445 at 16
        (20, 1438, 1, 64, 1e-3),  # 440 steps: the default batch
        (1, 100, 1, 4, 6.25e-5),  # never below 4
        (1, 1438, 3, 3, 4.6875e-5),  # a multiple of the processes
    ],
)
def test_a_short_run_trains_at_a_batch_that_makes_enough_steps_and_a_linearly_scaled_lr(
    epochs, images, processes, batch, lr
):
    config = make_config(epochs=epochs)
    note = settle_batch(config, images, processes)
    assert (config.batch_size, config.lr) == (batch, pytest.approx(lr))
    assert (note is None) == (batch == 64)


def test_the_batch_and_lr_the_user_gives_are_kept_and_the_lr_follows_a_given_batch():
    config = make_config(epochs=1, batch_size=64, lr=3e-4)
    assert settle_batch(config, 1438, 1) is None
    assert (config.batch_size, config.lr) == (64, 3e-4)
    config = make_config(epochs=1, batch_size=16)
    assert settle_batch(config, 1438, 1) is None
    assert (config.batch_size, config.lr) == (16, pytest.approx(2.5e-4))
    # the lr follows the images per optimizer step: 32 x 2 accumulated trains as 64
    config = make_config(epochs=1, batch_size=32, accumulate=2)
    assert settle_batch(config, 1438, 1) is None
    assert config.lr == pytest.approx(1e-3)


def test_the_chosen_batch_is_said_with_the_steps_it_avoids_and_the_flags_that_set_it():
    note = settle_batch(make_config(epochs=1), 1438, 1)
    assert note == (
        "batch 4, lr 6.25e-05: 1 epoch of 1438 images at batch 64 would be 22 optimizer "
        "steps, too few to learn in; --batch-size and --lr set them"
    )


def test_a_warm_up_as_long_as_the_run_is_said_with_the_setting_that_fits():
    lines, log = _lines()
    vitgraph.train(
        "vit",
        overrides=TINY,
        epochs=1,
        warmup_epochs=1.0,
        batch_size=64,
        lr=1e-3,
        progress=False,
        log=log,
    )
    assert (
        "note: the warm-up (1 epochs) covers the whole run of 1: the learning rate never "
        "reaches 0.001; --warmup-epochs 0.1 warms up for a tenth of it" in lines
    )


def test_digits_far_below_the_spec_s_input_get_a_note_with_a_setting_that_fits():
    graph = vitgraph.load("deit_ti")
    data = load_data("digits", graph.input_shape)
    from vitgraph.train.advice import size_note

    note = size_note(graph, data)
    assert note == (
        "note: digits images are 8x8 px and deit_ti takes 224x224: every image is upsampled "
        "784x in pixels; to train at a size that fits: --set image_size=32 --set patch=4"
    )
    # the setting it names builds, with the digits unscaled in pixels per patch
    hinted = vitgraph.load("deit_ti", overrides={"image_size": 32, "patch": 4})
    assert hinted.input_shape == (3, 32, 32) and size_note(hinted, data) is None


def test_images_are_normalised_with_the_spec_s_data_block():
    _, log = _lines()
    from vitgraph.train.loop import Trainer

    trainer = Trainer(
        make_config(spec="deit_ti", overrides={"image_size": 16, "depth": 1}, epochs=1), log
    )
    split = trainer.data.train
    assert (split.mean, split.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    images, _ = split.batch(torch.arange(4), "cpu")
    raw = split.images[:4].float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(images, (raw - mean) / std)


def test_a_stopped_run_and_a_finished_one_say_how_to_go_on(tmp_path):
    lines, log = _lines()
    settings = {"overrides": TINY, "epochs": 2, "progress": False, "log": log}
    vitgraph.train("vit", out=str(tmp_path), stop_after=1, **settings)
    checkpoint = tmp_path / "last.safetensors"
    assert lines[-1] == (
        f"stopped after epoch 1 of 2 (--stop-after); continue with: vitgraph train "
        f"--resume {checkpoint}"
    )
    vitgraph.train(resume=str(checkpoint), out=str(tmp_path), progress=False, log=log)
    lines.clear()
    vitgraph.train(resume=str(checkpoint), out=str(tmp_path), progress=False, log=log)
    assert (
        f"{checkpoint} is already at epoch 2 of 2: nothing left to train. To train longer: "
        f"vitgraph train --resume {checkpoint} --epochs 3" in lines
    )
    assert not any(line.startswith("epoch ") for line in lines)


def test_the_threads_a_run_uses_are_said():
    lines, log = _lines()
    vitgraph.train("vit", overrides=TINY, epochs=1, threads=1, progress=False, log=log)
    assert (
        lines[0]
        == f"cpu: 1 thread per process (--threads; {os.cpu_count()} cores; --threads N sets it)"
    )
    assert torch.get_num_threads() == 1  # the caller's count, given back


@pytest.mark.slow
def test_one_default_epoch_of_deit_ti_on_digits_ends_well_above_chance():
    """The newcomer's first command, ``vitgraph train deit_ti --data digits --epochs 1``,
    at the spec's 224 px."""
    start = time.perf_counter()
    result = vitgraph.train("deit_ti", data="digits", epochs=1, progress=False)
    print(
        f"\ndeit_ti, 224 px, 1 epoch: val acc {result.val_accuracy:.3f} "
        f"in {time.perf_counter() - start:.0f} s"
    )
    assert result.val_accuracy > 0.3
