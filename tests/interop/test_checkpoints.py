"""``vitgraph.load_weights``: timm checkpoints (safetensors or .pth) and vitgraph's own,
position tables resampled as timm resamples them, class-count changes, every misfit
reported by key; and the spec format version check."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph.weights import CheckpointError

timm = pytest.importorskip("timm")


def timm_checkpoint(tmp_path, name="vit_small_patch16_224", suffix=".safetensors", **kwargs):
    reference = redraw_(timm.create_model(name, pretrained=False, **kwargs))
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"model": state, "epoch": 3}, path)
    return path, state


def resampled_timm(state, depth, size):
    """timm's own model at ``size`` with the checkpoint loaded as timm loads pretrained
    weights (its checkpoint filter resamples the position table)."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    model = timm.create_model("vit_small_patch16_224", pretrained=False, depth=depth, img_size=size)
    model.load_state_dict(checkpoint_filter_fn(dict(state), model))
    return model.eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_vit_s_checkpoint_at_224_loads_at_384_with_timms_logits(tmp_path, suffix):
    depth = 2  # the full-depth run is test_full_vit_s_16_checkpoint_loads_at_384 (slow)
    path, state = timm_checkpoint(tmp_path, suffix=suffix, depth=depth)
    ours = vitgraph.load("vit_s_16", overrides={"image_size": 384, "depth": depth}).build()
    report = vitgraph.load_weights(ours, path)
    assert report.ok and report.format == "timm"
    assert report.resampled == ["pos_embed"]
    assert tuple(ours.pos_embed.shape) == (1, 1 + 24 * 24, 384)
    reference = resampled_timm(state, depth, 384)
    assert torch.equal(ours.pos_embed, reference.pos_embed)
    assert_same_logits(ours, reference, torch.randn(2, 3, 384, 384))


@pytest.mark.slow
def test_full_vit_s_16_checkpoint_loads_at_384(tmp_path):
    path, state = timm_checkpoint(tmp_path)
    ours = vitgraph.load("vit_s_16", overrides={"image_size": 384}).build()
    assert vitgraph.load_weights(ours, path).resampled == ["pos_embed"]
    diff = assert_same_logits(ours, resampled_timm(state, 12, 384), torch.randn(2, 3, 384, 384))
    print(f"vit_s_16 @384 from a 224 timm checkpoint: max |dlogits| = {diff:.2e}")


def test_timm_key_mapping_of_a_named_architecture_is_used(tmp_path):
    path, state = timm_checkpoint(tmp_path, "deit_tiny_distilled_patch16_224", depth=1, img_size=32)
    ours = vitgraph.load("deit_ti_distilled", overrides={"depth": 1, "image_size": 32}).build()
    report = vitgraph.load_weights(ours, path, timm_name="deit_tiny_distilled_patch16_224")
    assert report.ok and set(report.loaded) == set(state)
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in state.items())


def test_other_class_count_resets_the_head_with_a_warning(tmp_path):
    path, state = timm_checkpoint(tmp_path, depth=1, img_size=32)
    ours = vitgraph.load(
        "vit_s_16", overrides={"depth": 1, "image_size": 32, "classes": 10}
    ).build()
    fresh = ours.head.weight.detach().clone()
    with pytest.warns(UserWarning, match="10 classes: head.weight, head.bias re-initialised"):
        report = vitgraph.load_weights(ours, path)
    assert report.ok and report.reset == ["head.weight", "head.bias"]
    assert torch.equal(ours.head.weight, fresh)
    qkv = ours.get_submodule("blocks.0.attn.qkv").weight
    assert torch.equal(qkv, state["blocks.0.attn.qkv.weight"])


def test_misfitting_keys_are_reported_by_name(tmp_path):
    path, _ = timm_checkpoint(tmp_path, "deit_tiny_distilled_patch16_224", depth=1, img_size=32)
    ours = vitgraph.load("vit_ti_16", overrides={"depth": 2, "image_size": 32}).build()
    with pytest.raises(
        CheckpointError,
        match=r"unexpected: dist_token \(1, 1, 192\)\n  unexpected: head_dist.bias \(1000,\)\n"
        r"  unexpected: head_dist.weight \(1000, 192\)\n",
    ):
        vitgraph.load_weights(ours, path)
    report = vitgraph.load_weights(ours, path, strict=False)
    assert report.unexpected == ["dist_token", "head_dist.bias", "head_dist.weight"]
    assert report.mismatched == [("pos_embed", (1, 6, 192), (1, 5, 192))]
    assert "blocks.1.attn.qkv.weight" in report.missing
    assert "blocks.0.attn.qkv.weight" in report.loaded


def test_vitgraph_safetensors_round_trip_with_spec_metadata(tmp_path):
    graph = vitgraph.load("deit_ti_distilled", overrides={"depth": 1, "image_size": 32})
    model = redraw_(graph.build())
    path = tmp_path / "deit.safetensors"
    vitgraph.save_weights(model, graph, path)
    fresh = graph.build()
    report = vitgraph.load_weights(fresh, path)
    assert report.format == "vitgraph" and report.ok
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in model.state_dict().items())


def test_vitgraph_weights_of_a_newer_format_are_refused(tmp_path):
    model = vitgraph.load("vit_ti_16", overrides={"depth": 1, "image_size": 32}).build()
    path = tmp_path / "future.safetensors"
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(path),
        metadata={"vitgraph_format": "2"},
    )
    with pytest.raises(CheckpointError, match="weights format 2; this vitgraph reads 1"):
        vitgraph.load_weights(model, path)


def test_loading_warns_nothing_when_everything_fits(tmp_path):
    path, _ = timm_checkpoint(tmp_path, depth=1, img_size=32)
    ours = vitgraph.load("vit_s_16", overrides={"depth": 1, "image_size": 32}).build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = vitgraph.load_weights(ours, path)
    assert report.ok and not report.resampled and not report.reset


SPEC = """
vitgraph: {version}
name: tiny
input: {{channels: 3, size: 32}}
graph:
  - {{id: patch_embed, kind: patch_embed, patch: 16, dim: 32}}
  - {{id: pool, kind: mean_pool}}
  - {{id: head, kind: linear_head, classes: 4}}
"""


def test_spec_format_version_is_checked_on_load():
    assert vitgraph.load("tiny.yaml", text=SPEC.format(version=1)).output_shape == (4,)
    with pytest.raises(
        vitgraph.SpecError,
        match=r"tiny.yaml:2:\d+: .*spec format version 2 is newer than this "
        r"vitgraph reads \(1\)",
    ):
        vitgraph.load("tiny.yaml", text=SPEC.format(version=2))
    with pytest.raises(vitgraph.SpecError, match="unknown spec format version '1'"):
        vitgraph.load("tiny.yaml", text=SPEC.format(version="'1'"))


def test_every_shipped_spec_declares_the_current_format_version():
    from vitgraph.spec.catalog import shipped_specs
    from vitgraph.spec.document import FORMAT_VERSION

    for path in shipped_specs().values():
        assert vitgraph.load(path).source.document.vitgraph == FORMAT_VERSION
