"""Objectives in the loop: taps find the right nodes, the over-smoothing losses train any
patch-token spec, gradient accumulation equals the large batch, the SimpleViT recipe
loads and runs, bf16 autocast runs on CPU, and the CLI trains and resumes."""

import json

import pytest
import torch

import vitgraph
from vitgraph.cli import main
from vitgraph.train.config import make_config
from vitgraph.train.taps import Taps

TINY = {"image_size": 8, "patch": 4, "dim": 16, "depth": 1, "heads": 2, "mlp_ratio": 2.0}
QUIET = {"data": "digits", "progress": False, "log": lambda line: None}


def test_taps_find_the_patch_embedding_the_last_tokens_and_the_classifier():
    graph = vitgraph.load("simplevit", overrides=TINY)
    model = graph.build()
    taps = Taps(graph, model)
    assert (taps.embed_id, taps.last_id, taps.grid, taps.prefix) == (
        "patch_embed",
        "norm",
        (2, 2),
        0,
    )
    assert [type(m).__name__ for m in taps.classifier] == ["PreLogitsLayer", "Linear"]
    model(torch.randn(3, 3, 8, 8))
    assert taps.embedded.shape == (3, 4, 16) and taps.classify_patches().shape == (3, 4, 1000)
    vit = vitgraph.load("vit", overrides=TINY)
    taps = Taps(vit, vit.build())
    assert (taps.last_id, taps.prefix, len(taps.classifier)) == ("norm", 1, 1)


def test_the_over_smoothing_losses_train_a_vit_and_add_to_its_loss():
    plain = vitgraph.train("vit", overrides=TINY, epochs=1, batch_size=64, **QUIET)
    mixed = vitgraph.train(
        "vit",
        overrides=TINY,
        epochs=1,
        batch_size=64,
        cosine_weight=1.0,
        contrastive_weight=0.5,
        patch_mix_weight=1.0,
        **QUIET,
    )
    # the extra terms are positive: the cosine penalty of a barely trained model is near
    # 1, the contrastive loss near log(4), the patch mixing loss near log(10)
    assert mixed.history[0]["loss"] > plain.history[0]["loss"] + 1.0


def test_gradient_accumulation_gives_the_weights_of_the_large_batch():
    spec = {**TINY, "blocks.qkv_bias": False}  # see test_train_ddp: the key bias is noise
    big = vitgraph.train("vit", overrides=spec, epochs=1, batch_size=64, **QUIET)
    accumulated = vitgraph.train(
        "vit", overrides=spec, epochs=1, batch_size=32, accumulate=2, **QUIET
    )
    a, b = big.model.state_dict(), accumulated.model.state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5


def test_the_simplevit_recipe_loads_and_an_unknown_setting_is_named():
    config = make_config("simplevit")
    assert (
        config.spec,
        config.batch_size * config.accumulate,
        config.mixup,
        config.randaugment,
        config.label_smoothing,
    ) == ("simplevit_s_16", 1024, 0.2, [2, 10], 0.0)
    with pytest.raises(ValueError, match="unknown training setting 'learning_rate'"):
        make_config("simplevit", learning_rate=1.0)
    with pytest.raises(ValueError, match="did you mean 'mixup'"):
        make_config(None, mixupp=0.2)


def test_a_run_with_the_simplevit_recipe_uses_mixup_randaugment_and_accumulation():
    result = vitgraph.train(
        "simplevit",
        overrides=TINY,
        recipe="simplevit",
        epochs=1,
        batch_size=32,
        accumulate=4,
        warmup_epochs=0.5,
        **QUIET,
    )
    assert len(result.history) == 1 and result.history[0]["loss"] > 0


def test_bfloat16_autocast_runs_on_cpu():
    result = vitgraph.train("vit", overrides=TINY, epochs=1, batch_size=64, amp=True, **QUIET)
    assert torch.isfinite(torch.tensor(result.history[0]["loss"]))


def test_the_cli_trains_writes_checkpoints_and_resumes(tmp_path, capsys):
    sets = [f"--set={k}={v}" for k, v in TINY.items()]
    out = str(tmp_path / "run")
    assert (
        main(
            [
                "train",
                "vit",
                *sets,
                "--epochs=2",
                "--stop-after=1",
                "--batch-size=64",
                "--out",
                out,
                "--json",
            ]
        )
        == 0
    )  # the rich progress bar goes to stderr
    first = json.loads(capsys.readouterr().out)
    assert [h["epoch"] for h in first["history"]] == [1]
    assert main(["train", "--resume", f"{out}/last.safetensors", "--no-progress", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    assert (tmp_path / "run" / "model.safetensors").is_file()
    from vitgraph.train.checkpoint import load_checkpoint, rebuild_graph

    ckpt = load_checkpoint(f"{out}/last.safetensors")
    assert ckpt.epoch == 2 and rebuild_graph(ckpt.meta).name == "vit"
    assert {"exp_avg", "exp_avg_sq", "step"} <= set(ckpt.optimizer["state"][0])
