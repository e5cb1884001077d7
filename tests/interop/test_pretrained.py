"""Published weights (#20 item 3): every spec's ``pretrained:`` table names its variants'
timm model and default tag (or HF repo) as the family table does; ``pretrained=True``
reads a timm checkpoint file or a saved HF model as timm and transformers read them, at
the checkpoint's size or another; without a network, one line says what to do."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import vitgraph
from tests.families import FAMILIES
from tests.helpers import redraw_
from vitgraph.interop.pretrained import PretrainedError
from vitgraph.spec.catalog import shipped_specs

timm = pytest.importorskip("timm")


def _tables() -> dict[str, dict[str, str]]:
    return {name: dict(vitgraph.load(name).source.document.pretrained) for name in shipped_specs()}


def test_every_timm_family_lists_its_variants_published_timm_weights_by_default_tag():
    from timm.models import get_pretrained_cfg

    published = {name.split(".")[0] for name in timm.list_pretrained()}
    tables = _tables()
    for family in FAMILIES.values():
        if family.reference != "timm":
            continue
        expected = {}
        for variant, name in family.names.items():
            if name in published:
                expected[variant] = f"timm:{name}.{get_pretrained_cfg(name).tag}"
        assert tables[family.family] == expected, family.family


def test_a_timm_checkpoint_file_loads_as_timm_loads_it_at_its_size_and_another(tmp_path):
    reference = redraw_(timm.create_model("deit_tiny_patch16_224"))
    path = tmp_path / "deit_tiny.pth"
    torch.save(reference.state_dict(), path)
    x = torch.randn(1, 3, 224, 224)
    ours = vitgraph.create_model("deit_ti", pretrained=True, pretrained_file=path).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference.eval()(x), atol=1e-4, rtol=0)
    # at 160 px with 10 classes: the position table resampled as timm resamples it
    theirs = timm.create_model(
        "deit_tiny_patch16_224",
        pretrained=True,
        pretrained_cfg_overlay={"file": str(path)},
        img_size=160,
        num_classes=10,
    ).eval()
    with pytest.warns(UserWarning, match="re-initialised"):
        ours = vitgraph.create_model(
            "deit_ti", pretrained=True, pretrained_file=path, img_size=160, num_classes=10
        ).eval()
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        a = ours.forward_head(ours.forward_features(x), pre_logits=True)
        b = theirs.forward_head(theirs.forward_features(x), pre_logits=True)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.slow  # PVT-Tiny at full size (13 s): make parity-all
def test_a_saved_hf_model_loads_for_an_hf_family(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.PvtConfig(depths=[2, 2, 2, 2])
    reference = redraw_(transformers.PvtForImageClassification(config)).eval()
    reference.save_pretrained(tmp_path / "pvt")
    ours = vitgraph.create_model("pvt_tiny", pretrained=True, pretrained_file=tmp_path / "pvt")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference(x).logits, atol=1e-4, rtol=0)


def test_a_variant_without_published_weights_says_which_have_them():
    with pytest.raises(PretrainedError, match="cpvt_ti has no published weights"):
        vitgraph.create_model("cpvt_ti", pretrained=True)


def test_without_a_network_or_cache_build_pretrained_says_what_to_do_in_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [sys.executable, "-m", "vitgraph.cli", "build", "deit_ti", "--pretrained"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "timm:deit_tiny_patch16_224.fb_in1k could not be fetched" in lines[0]
    assert "huggingface-cli download timm/deit_tiny_patch16_224.fb_in1k" in lines[0]


def test_convert_writes_a_timm_checkpoint_as_weights_that_give_timms_logits(tmp_path, capsys):
    from vitgraph.cli import main

    reference = redraw_(timm.create_model("deit_tiny_patch16_224", depth=2)).eval()
    torch.save({"model": reference.state_dict()}, tmp_path / "deit.pth")  # DeiT's layout
    out = tmp_path / "deit.safetensors"
    argv = ["convert", str(tmp_path / "deit.pth"), "--spec", "deit_ti", "--set", "depth=2"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "deit.pth -> " in capsys.readouterr().out
    ours = vitgraph.load("deit_ti", overrides={"depth": 2}).build(weights=out).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-4, rtol=0)


def test_convert_of_a_layout_without_a_key_map_names_the_gap(tmp_path, capsys):
    from vitgraph.cli import main

    torch.save({"w": torch.zeros(1)}, tmp_path / "cpvt.pth")
    argv = ["convert", str(tmp_path / "cpvt.pth"), "--spec", "cpvt_ti", "--out", "x.safetensors"]
    assert main(argv) == 1
    assert "no converter for cpvt_ti's checkpoint layout" in capsys.readouterr().err


def test_convert_reads_vit_pytorchs_cct_checkpoint_as_vit_pytorch_computes(tmp_path):
    from tests.references import cct_reference
    from vitgraph.cli import main

    reference = redraw_(cct_reference("cct_7_3x1", num_layers=2, img_size=32)).eval()
    torch.save(reference.state_dict(), tmp_path / "cct.pth")
    out = tmp_path / "cct.safetensors"
    sets = ["--set", "depth=2", "--set", "image_size=32"]
    assert (
        main(
            ["convert", str(tmp_path / "cct.pth"), "--spec", "cct_7_3x1", *sets, "--out", str(out)]
        )
        == 0
    )
    ours = vitgraph.load("cct_7_3x1", overrides={"depth": 2, "image_size": 32}).build(weights=out)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference(x), atol=1e-4, rtol=0)
