"""A tiny ViT trains on scikit-learn's digits on CPU to >= 95% held-out accuracy, and an
interrupted run resumed from its checkpoint ends with the same weights."""

import time

import torch

import vitgraph

TINY = {"image_size": 16, "patch": 4, "dim": 64, "depth": 2, "heads": 4, "mlp_ratio": 2.0}


def test_a_tiny_vit_reaches_95_percent_on_held_out_digits_within_three_minutes(capsys):
    start = time.perf_counter()
    result = vitgraph.train(
        "vit",
        overrides=TINY,
        data="digits",
        epochs=7,
        batch_size=32,
        lr=3e-3,
        warmup_epochs=1.0,
        progress=False,
    )
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f"\ndigits: val acc {result.val_accuracy:.4f} in {elapsed:.1f} s")
    assert result.val_accuracy >= 0.95
    assert elapsed < 180
    assert [h["epoch"] for h in result.history] == list(range(1, 8))


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_run_killed_after_epoch_one_and_resumed_ends_with_the_same_weights(tmp_path):
    # dropout and stochastic depth on, so the RNG streams must line up too
    spec = {**TINY, "dim": 32, "depth": 1, "heads": 2, "dropout": 0.1, "drop_path_rate": 0.1}
    common = dict(
        data="digits", epochs=2, batch_size=128, lr=2e-3, progress=False, log=lambda line: None
    )
    whole = vitgraph.train("vit", overrides=spec, out=str(tmp_path / "whole"), **common)
    vitgraph.train("vit", overrides=spec, out=str(tmp_path / "cut"), stop_after=1, **common)
    torch.manual_seed(1234)  # a fresh process would not share the first run's RNG state
    torch.rand(100)
    resumed = vitgraph.train(
        resume=str(tmp_path / "cut" / "last.safetensors"), progress=False, log=lambda line: None
    )
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    a, b = _weights(whole.model), _weights(resumed.model)
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"\nresumed vs uninterrupted: max |weight diff| {worst:.2e}")
    assert worst <= 1e-6
