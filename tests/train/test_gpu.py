"""Training on CUDA: bfloat16 autocast (the default there) and NCCL DDP. CI has no GPU,
so each test skips cleanly without one; run on a GPU machine before resolving #7."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import vitgraph

TINY = {"image_size": 16, "patch": 4, "dim": 64, "depth": 2, "heads": 4, "mlp_ratio": 2.0}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
def test_digits_train_on_cuda_with_bf16_autocast_by_default():
    result = vitgraph.train(
        "vit",
        overrides=TINY,
        data="digits",
        epochs=7,
        batch_size=32,
        lr=3e-3,
        progress=False,
        device="cuda",
        log=lambda line: None,
    )
    assert result.val_accuracy >= 0.95
    assert all(p.device.type == "cuda" for p in result.model.parameters())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL DDP needs two CUDA devices")
def test_two_nccl_processes_train_to_the_weights_of_one(tmp_path):
    settings = [
        "--epochs=1",
        "--batch-size=64",
        "--lr=2e-3",
        "--data=digits",
        "--no-amp",
        "--device=cuda",
        "--no-progress",
    ]
    sets = [f"--set={k}={v}" for k, v in {**TINY, "blocks.qkv_bias": False}.items()]
    base = [sys.executable, "-m", "vitgraph.cli", "train", "vit", *sets, *settings]
    one = subprocess.run(
        [*base, "--out", str(tmp_path / "one")], capture_output=True, text=True, timeout=600
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            *base[1:],
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-4
