"""FSDP2 (``vitgraph train --strategy fsdp``) on two CPU processes (gloo): the sharded
step is the one-process step, sharded checkpoints resume exactly on any number of
processes and gather into one weights file."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from torch import fx, nn

import vitgraph
from tests.families import FAMILIES
from tests.helpers import torchrun
from vitgraph.train.checkpoint import load_checkpoint, rebuild_graph
from vitgraph.train.fsdp import in_place_steps, unit_leaves

TINY = {
    "image_size": 8,
    "patch": 4,
    "dim": 16,
    "depth": 2,
    "heads": 2,
    "mlp_ratio": 2.0,
    "blocks.qkv_bias": False,
}
# One SGD step per epoch (1,437 digits: 360 x 2 accumulated = 720), lr 1 at the first
# step: the weights after epoch 1 differ from the start by exactly the (clipped)
# gradient, so comparing weights compares gradients. Momentum makes the second step
# depend on the optimizer state a resumed run must restore from the shards.
SETTINGS = {
    "data": "digits",
    "epochs": 2,
    "batch_size": 360,
    "accumulate": 2,
    "lr": 1.0,
    "warmup_epochs": 0.0,
    "optimizer": "sgd",
    "momentum": 0.9,
    "grad_clip": 1.0,
    "grad_checkpointing": True,
}


def _train_fsdp(*args: str) -> list[dict]:
    flags = [
        f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items() if k != "grad_checkpointing"
    ]
    done = torchrun(
        "-m",
        "vitgraph.cli",
        "train",
        "vit",
        "--strategy=fsdp",
        "--grad-checkpointing",
        "--no-progress",
        "--json",
        *[f"--set={k}={v}" for k, v in TINY.items()],
        *flags,
        *args,
    )
    return json.loads(done.stdout)["history"]


def _one_process(**settings):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return vitgraph.train(
            "vit", overrides=TINY, progress=False, log=lambda line: None, **{**SETTINGS, **settings}
        )
    finally:
        torch.set_num_threads(before)


def _worst(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The one-process runs the sharded ones must equal: stopped after the first step
    (with its checkpoint) and uninterrupted."""
    out = tmp_path_factory.mktemp("one")
    return _one_process(stop_after=1, out=str(out)), _one_process()


# in make test again: the abort at exit of a torchrun process running FSDP ("terminate
# called without an active exception", once about 1 launch in 20) went with the teardown
# that drops every holder of the process group (Trainer._unshard, ddp.teardown); none in
# 240 launches since, on a loaded machine
def test_fsdp_on_two_processes_takes_the_one_process_step_and_resumes_from_its_shards(
    tmp_path, one_process
):
    one_step, two_steps = one_process
    # epoch 1 sharded, stopped: its gathered weights are the one-process step's
    history = _train_fsdp("--stop-after=1", f"--out={tmp_path / 'two'}")
    step = load_file(str(tmp_path / "two" / "model.safetensors"))
    worst = _worst(step, one_step.model.state_dict())
    print(f"\nFSDP step vs one process: max |grad diff| {worst:.2e}")
    assert worst <= 1e-5
    assert abs(history[0]["loss"] - one_step.history[0]["loss"]) <= 1e-5
    shards = tmp_path / "two" / "last.sharded"
    assert sorted(p.name for p in shards.iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
        "vitgraph.json",
    ]
    kept = tmp_path / "epoch1.sharded"
    shutil.copytree(shards, kept)
    # resumed from its shards, sharded: the uninterrupted run's weights (momentum restored)
    history = _train_fsdp(f"--resume={shards}", f"--out={tmp_path / 'two'}")
    final = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert _worst(final, two_steps.model.state_dict()) <= 1e-5
    assert [round(h["loss"], 5) for h in history] == [
        round(h["loss"], 5) for h in two_steps.history
    ]
    # the shards gather into one weights file, in one process
    gathered = tmp_path / "gathered.safetensors"
    from vitgraph.cli import main

    assert main(["gather", str(shards), "--out", str(gathered)]) == 0
    assert _worst(load_file(str(gathered)), final) == 0.0
    meta = load_checkpoint(gathered).meta  # the spec travels with the weights
    assert rebuild_graph(meta).name == "vit" and meta["vitgraph_format"]
    # the epoch-1 shards resume in one process too, unsharded
    resumed = _one_process(resume=str(kept))
    assert _worst(resumed.model.state_dict(), two_steps.model.state_dict()) <= 1e-5


@pytest.mark.slow
def test_a_one_file_checkpoint_resumes_sharded(tmp_path, one_process):
    one_step, two_steps = one_process
    assert one_step.checkpoint is not None
    _train_fsdp(f"--resume={one_step.checkpoint}", f"--out={tmp_path / 'two'}")
    final = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert _worst(final, two_steps.model.state_dict()) <= 1e-5


def _step_report(tmp_path, variants: list[str]) -> dict:
    out = tmp_path / "steps.json"
    torchrun("-m", "tests.train.fsdp_step", str(out), *variants, timeout=900)
    return json.loads(out.read_text())


# slow (16 s): the windowed and generative specs' sharded step; make test runs ViT's above
@pytest.mark.slow
def test_the_sharded_gradient_of_a_windowed_and_a_generative_spec_is_the_one_process_one(
    tmp_path,
):
    report = _step_report(tmp_path, ["swin_t", "igpt_s"])
    for name, row in report.items():
        assert row["units"] >= 1, name
        assert row["grad_scale"] > 0, name
        assert row["loss"] <= 1e-5 and row["grad"] <= 1e-5, (name, row)


@pytest.mark.slow
def test_the_sharded_gradient_of_every_family_is_the_one_process_gradient(tmp_path):
    report = _step_report(tmp_path, [])
    assert report.keys() == {f.variants[0] for f in FAMILIES.values()}
    for name, row in report.items():
        assert row["units"] >= 1 and row["grad_scale"] > 0, (name, row)
        assert row["loss"] <= 1e-5 and row["grad"] <= 1e-5 * max(1.0, row["grad_scale"]), name


def test_each_repeat_unit_is_sharded_as_the_leaf_modules_its_graph_calls():
    model = vitgraph.build("vit", overrides=TINY)
    leaves = ["norm1", "attn", "norm2", "mlp"]
    assert unit_leaves(model) == {
        f"blocks.{i}": [f"blocks.{i}.{m}" for m in leaves] for i in (0, 1)
    }


def test_in_place_steps_on_a_module_output_are_found():
    class Writes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.linear(x)
            y.add_(1.0)
            return self.act(y)

    assert in_place_steps(fx.symbolic_trace(Writes())) == ["add_", "act"]
    assert in_place_steps(vitgraph.build("vit", overrides=TINY)) == []


def test_an_unknown_strategy_is_refused_by_name():
    with pytest.raises(
        ValueError, match=r"strategy 'fdsp' is not one of ddp, fsdp \(did you mean 'fsdp'\?\)"
    ):
        vitgraph.train("vit", overrides=TINY, strategy="fdsp", progress=False)


@pytest.mark.slow
def test_a_sharded_run_resumed_from_its_shards_is_bit_for_bit_the_uninterrupted_one(tmp_path):
    _train_fsdp(f"--out={tmp_path / 'whole'}")
    _train_fsdp("--stop-after=1", f"--out={tmp_path / 'parts'}")
    _train_fsdp(f"--resume={tmp_path / 'parts' / 'last.sharded'}", f"--out={tmp_path / 'parts'}")
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    parts = load_file(str(tmp_path / "parts" / "model.safetensors"))
    assert _worst(whole, parts) == 0.0


def test_a_model_with_a_mask_input_keeps_it_under_activation_checkpointing():
    from tests.families import DETR_SMALL

    model = vitgraph.build("detr_r50", overrides=DETR_SMALL).eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 64, 64, dtype=torch.bool)
    mask[0, :, 40:] = False
    plain, unmasked = model(images, mask), model(images)
    model.set_grad_checkpointing(True)
    for ours, ref in ((model(images, pixel_mask=mask), plain), (model(images), unmasked)):
        assert all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True))
    with pytest.raises(TypeError, match="the model takes no input 'mask'"):
        model(images, mask=mask)
