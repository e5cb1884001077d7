"""DETR's blocks (blocks/detr.py) and what the family added to the language: the pixel
mask as a spec-declared extra input, the sine encoding against HF's, positions on q and
k only, the shared decoder norm, ``group.*`` inputs, the counts on the meta device, the
backbone swaps of examples/detection/ and ``vitgraph predict`` / ``digit-boxes``."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch

import vitgraph
from tests.families import DETR_SMALL
from vitgraph.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "detection"


def test_the_compiled_model_takes_the_pixel_mask_as_an_optional_keyword():
    graph = vitgraph.load("detr", overrides=DETR_SMALL)
    assert list(graph.extra_inputs) == ["pixel_mask"]
    assert str(graph.extra_inputs["pixel_mask"]) == "mask 64x64"
    model = graph.build()
    parameters = inspect.signature(model.forward).parameters
    assert list(parameters) == ["x", "pixel_mask"] and parameters["pixel_mask"].default is None


def test_the_sine_encoding_equals_hfs_with_a_padding_mask():
    modeling = pytest.importorskip("transformers.models.detr.modeling_detr")
    from vitgraph.blocks.detr import SinePosition

    mask = torch.ones(2, 6, 9, dtype=torch.bool)
    mask[1, 4:, :] = False
    mask[1, :, 5:] = False
    x = torch.randn(2, 32, 6, 9)
    theirs = modeling.DetrSinePositionEmbedding(16, normalize=True)(
        x.shape, "cpu", torch.float32, mask
    )
    ours = SinePosition(32, 10000.0, 2 * torch.pi)(x, mask)
    torch.testing.assert_close(ours, theirs.flatten(2).transpose(1, 2))
    # no mask is every pixel valid
    torch.testing.assert_close(SinePosition(32, 10000.0, 2 * torch.pi)(x, None)[0], ours[0])


def test_positions_reach_the_queries_and_keys_only():
    from vitgraph.blocks.detr import DetrEncoderLayer, EncoderLayer

    layer = EncoderLayer(DetrEncoderLayer(heads=2, ffn=16, drop=0.0), 8).eval()
    with torch.no_grad():  # zero q and k: uniform attention, whatever the positions
        for proj in (layer.self_attn.q, layer.self_attn.k):
            proj.weight.zero_()
            proj.bias.zero_()
    x = torch.randn(1, 5, 8)
    with torch.no_grad():
        a = layer(x, torch.zeros(1, 5, 8), None)
        b = layer(x, torch.randn(1, 5, 8) * 10, None)
    torch.testing.assert_close(a, b)


def test_the_decoder_norm_is_one_layernorm_over_every_decoder_output():
    graph = vitgraph.load("detr", overrides={**DETR_SMALL, "dec_layers": 3})
    assert graph.node("decoder_stack").inputs == ["decoder.0", "decoder.1", "decoder.2"]
    model = graph.build()
    assert [k for k in model.state_dict() if k.startswith("decoder_norm")] == [
        "decoder_norm.weight",
        "decoder_norm.bias",
    ]


@pytest.mark.parametrize(
    ("variant", "params"),
    [("detr_r50", 41_524_768), ("detr_r101", 60_464_672), ("detr_dc5_r50", 41_524_768)],
)
def test_validate_json_counts_every_parameter_on_the_meta_device(variant, params, capsys):
    assert main(["validate", variant, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == params


def test_frozen_batchnorm_tensors_are_buffers_so_the_backbone_counts_only_its_convs():
    model = vitgraph.load("detr").build(device="meta")
    buffers = dict(model.named_buffers())
    assert {"layer1.0.bn1.weight", "layer1.0.bn1.running_var"} <= set(buffers)
    stem_and_layers = sum(
        p.numel()
        for n, p in model.named_parameters()
        if n.split(".")[0] in ("backbone", "layer1", "layer2", "layer3", "layer4")
    )
    assert stem_and_layers == 23_454_912  # ResNet-50's convolutions alone


@pytest.mark.parametrize(
    ("example", "params", "size"),
    [("detr_pvt_small", 43_290_208, 64), ("detr_swin_t", 45_261_530, 224)],
)
def test_a_backbone_swap_counts_and_runs_with_a_padding_mask(example, params, size):
    path = str(EXAMPLES / f"{example}.yaml")
    assert vitgraph.load(path).summary().params == params
    small = {"image_size": size, "enc_layers": 1, "dec_layers": 2, "depths": [1, 1, 1, 1]}
    graph = vitgraph.load(path, overrides=small)
    model = graph.build().eval()
    mask = torch.ones(2, size, size, dtype=torch.bool)
    mask[1, :, size // 2 :] = False
    with torch.no_grad():
        logits, boxes = model(torch.randn(2, 3, size, size), mask)
    assert logits.shape == (2, 100, 92) and boxes.shape == (2, 100, 4)
    assert torch.isfinite(logits).all()


def test_digit_boxes_and_predict_draw_a_detectors_boxes_on_a_png(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert main(["digit-boxes", str(tmp_path / "set"), "--images", "5", "--size", "64"]) == 0
    graph = vitgraph.load("detr", overrides=DETR_SMALL)
    torch.manual_seed(0)
    vitgraph.save_weights(graph.build(), graph, tmp_path / "w.safetensors")
    sets = [f"--set={k}={json.dumps(v)}" for k, v in DETR_SMALL.items()]
    out = tmp_path / "boxes.png"
    image = str(tmp_path / "set" / "images" / "00000.png")
    argv = [
        "predict",
        "detr",
        image,
        "--weights",
        str(tmp_path / "w.safetensors"),
        "--out",
        str(out),
    ]
    assert main([*argv, "--threshold", "0", *sets]) == 0
    printed = capsys.readouterr().out
    assert "5 box(es) at probability >= 0.0 drawn on" in printed
    from PIL import Image

    assert Image.open(out).size == (64, 64)


def test_predict_prints_a_classifiers_top_five(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (40, 30), (120, 20, 200)).save(tmp_path / "a.png")
    argv = [
        "predict",
        "vit_ti_16",
        str(tmp_path / "a.png"),
        "--set",
        "image_size=32",
        "--set",
        "depth=1",
    ]
    assert main([*argv, "--set", "patch=16"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5


def test_predict_on_a_missing_image_file_says_so_in_one_line(tmp_path, capsys):
    missing = tmp_path / "nothere.png"
    assert main(["predict", "vit_ti_16", str(missing)]) == 1
    assert capsys.readouterr().err == f"error: no image file {missing}\n"
