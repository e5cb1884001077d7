"""DDP: ``torchrun --nproc_per_node=2`` on CPU (gloo) ends with the same weights as one
process with the same global batch."""

import pytest
import torch
from safetensors.torch import load_file

import vitgraph
from tests.helpers import torchrun

# No qkv bias: the key bias's true gradient is exactly zero (softmax ignores a constant
# shift), so its float gradient is rounding noise whose sign differs between a 64-sample
# sum and two 32-sample sums, and AdamW turns any sign into a full lr-sized step (seen:
# 1.5e-4 there, every other weight within 6e-8).
TINY = {
    "image_size": 8,
    "patch": 4,
    "dim": 16,
    "depth": 1,
    "heads": 2,
    "mlp_ratio": 2.0,
    "blocks.qkv_bias": False,
}
SETTINGS = {"epochs": 1, "batch_size": 64, "lr": 2e-3, "data": "digits"}


def test_two_gloo_processes_give_the_weights_of_one_process_with_the_same_batch(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = vitgraph.train(
            "vit",
            overrides=TINY,
            progress=False,
            log=lambda line: None,
            out=str(tmp_path / "one"),
            **SETTINGS,
        )
    finally:
        torch.set_num_threads(before)
    done = torchrun(
        "-m",
        "vitgraph.cli",
        "train",
        "vit",
        "--out",
        str(tmp_path / "two"),
        "--no-progress",
        *[f"--set={k}={v}" for k, v in TINY.items()],
        *[f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()],
    )
    assert done.stdout.count("epoch 1/1") == 1  # only rank 0 reports
    ours = load_file(str(tmp_path / "two" / "model.safetensors"))
    ref = {k: v for k, v in single.model.state_dict().items()}
    assert ours.keys() == ref.keys()
    worst = max((ours[k] - ref[k]).abs().max().item() for k in ref)
    print(f"\nDDP (2 x 32) vs one process (64): max |weight diff| {worst:.2e}")
    assert worst <= 1e-5


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(monkeypatch):
    from vitgraph.train import ddp

    monkeypatch.setattr(ddp, "setup", lambda device: ddp.World(0, 3, 0))
    with pytest.raises(ValueError, match="batch 64 does not split over 3 processes"):
        vitgraph.train("vit", overrides=TINY, progress=False, **SETTINGS)
