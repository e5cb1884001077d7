"""Deformable DETR's blocks (blocks/deformable_detr.py): the counts of
specs/deformable_detr.yaml to the unit on the meta device, in the official convention and
HF's tied one; multi-scale deformable attention against HF's; the degenerate one-point,
zero-offset case; the multi-scale sine encoding; the located errors; the focal prior."""

from __future__ import annotations

import json

import pytest
import torch

import vitgraph
from tests.families import DEFORMABLE_DETR_SMALL
from tests.helpers import line_of
from vitgraph.blocks.deformable_detr import DeformAttn, deformable_sample
from vitgraph.cli import main

SPEC = "specs/deformable_detr.yaml"
#: (training outputs at a small size: tests/families.py's DEFORMABLE_DETR row)
SMALL = DEFORMABLE_DETR_SMALL


@pytest.mark.parametrize(
    ("variant", "params"),
    [
        ("deformable_detr", 40_069_665),
        ("deformable_detr_single_scale", 34_066_593),
        ("deformable_detr_refine", 40_849_660),  # official: a class head per layer
        ("deformable_detr_two_stage", 41_181_529),
    ],
)
def test_validate_json_counts_the_official_parameters_on_the_meta_device(variant, params, capsys):
    assert main(["validate", variant, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == params


def test_refinement_with_hfs_tied_class_heads_counts_hfs_parameters():
    graph = vitgraph.load("deformable_detr_refine", overrides={"class_heads": "shared"})
    assert graph.summary().params == 40_732_725  # 40,849,660 - 5 x (256 x 91 + 91)


def _hf_attention():
    modeling = pytest.importorskip("transformers.models.deformable_detr.modeling_deformable_detr")
    return modeling


def test_the_sampling_core_equals_hfs_multiscale_deformable_attention():
    modeling = _hf_attention()
    gen = torch.Generator().manual_seed(0)
    shapes = [(6, 7), (3, 4), (2, 2)]
    length = sum(h * w for h, w in shapes)
    value = torch.randn(2, length, 4, 8, generator=gen)
    where = torch.rand(2, 5, 4, 3, 2, 2, generator=gen) * 1.2 - 0.1  # some outside [0, 1]
    weights = torch.rand(2, 5, 4, 3, 2, generator=gen)
    table = torch.tensor(shapes)
    starts = torch.cat((table.new_zeros(1), table.prod(1).cumsum(0)[:-1]))
    theirs = modeling.MultiScaleDeformableAttention()(
        value, table, shapes, starts, where, weights, 64
    )
    torch.testing.assert_close(deformable_sample(value, shapes, where, weights), theirs)


@pytest.mark.parametrize("coords", [2, 4], ids=["points", "boxes"])
def test_deformable_attention_equals_hfs_module_with_a_padding_mask(coords):
    modeling = _hf_attention()
    transformers = pytest.importorskip("transformers")
    config = transformers.DeformableDetrConfig(d_model=32, num_feature_levels=3)
    theirs = modeling.DeformableDetrMultiscaleDeformableAttention(config, 4, 2).eval()
    ours = DeformAttn(32, 4, 3, 2, coords).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    ours.load_state_dict(theirs.state_dict())
    shapes = [(6, 7), (3, 4), (2, 2)]
    length = sum(h * w for h, w in shapes)
    memory = torch.randn(2, length, 32, generator=gen)
    valid = torch.rand(2, length, generator=gen) > 0.2
    query = torch.randn(2, 5, 32, generator=gen)
    reference = torch.rand(2, 5, 3, coords, generator=gen)
    table = torch.tensor(shapes)
    sizes = table.flip(-1).float()  # (w, h)
    with torch.no_grad():
        expected, _ = theirs(
            query,
            attention_mask=valid,
            encoder_hidden_states=memory,
            reference_points=reference,
            spatial_shapes=table,
            spatial_shapes_list=shapes,
            level_start_index=torch.cat((table.new_zeros(1), table.prod(1).cumsum(0)[:-1])),
        )
        got = ours(query, reference, memory, valid, shapes, sizes)
    torch.testing.assert_close(got, expected)


def test_one_point_at_zero_offset_reads_the_value_at_the_reference_pixel():
    attn = DeformAttn(16, 2, 1, 1).eval()
    with torch.no_grad():
        attn.sampling_offsets.weight.zero_()
        attn.sampling_offsets.bias.zero_()
    rows, cols = 5, 6
    memory = torch.randn(1, rows * cols, 16)
    pixels = torch.tensor([0, 7, 29])  # (0, 0), (1, 1), (4, 5)
    y, x = pixels // cols, pixels % cols
    centres = torch.stack(((x + 0.5) / cols, (y + 0.5) / rows), -1)  # pixel centres
    with torch.no_grad():
        sizes = torch.tensor([[float(cols), float(rows)]])
        out = attn(
            torch.randn(1, 3, 16), centres[None, :, None], memory, None, [(rows, cols)], sizes
        )
        expected = attn.output_proj(attn.value_proj(memory[:, pixels]))
    torch.testing.assert_close(out, expected)


def test_the_multi_scale_sine_encoding_equals_hfs_with_its_half_pixel_offset():
    modeling = _hf_attention()
    from vitgraph.blocks.detr import SinePosition

    mask = torch.ones(2, 6, 9, dtype=torch.bool)
    mask[1, 4:, :] = False
    mask[1, :, 5:] = False
    x = torch.randn(2, 32, 6, 9)
    theirs = modeling.DeformableDetrSinePositionEmbedding(16, normalize=True)(
        x.shape, "cpu", torch.float32, mask
    )
    ours = SinePosition(32, 10000.0, 2 * torch.pi, offset=0.5)(x, mask)
    torch.testing.assert_close(ours, theirs.flatten(2).transpose(1, 2))


def _error(overrides: dict) -> str:
    with pytest.raises(vitgraph.SpecError) as info:
        vitgraph.load("deformable_detr", overrides=overrides)
    return str(info.value)


def test_a_width_that_is_not_a_multiple_of_32_is_located_at_the_projection():
    line = line_of(SPEC, "id: input_proj,")
    assert _error({"dim": 48}).endswith(
        f"deformable_detr.yaml:{line}:56: input_proj: dim 48 is not a multiple of 32: each "
        "level's GroupNorm has 32 groups\n  hint: dim: 32 or 64"
    )


def test_fewer_levels_than_taps_is_located_at_the_projection():
    message = _error({"levels": 2})
    assert f"deformable_detr.yaml:{line_of(SPEC, 'id: input_proj,')}:70: input_proj: " in message
    assert "levels 2 but 3 taps are projected" in message
    assert message.endswith("hint: levels: 3 (or more), or taps: 2")


def test_an_attention_level_count_that_differs_from_the_memorys_is_located():
    text = (
        open(SPEC)
        .read()
        .replace("act_drop: $act_drop, act: $act}", "act_drop: $act_drop, act: $act, levels: 3}", 1)
    )
    with pytest.raises(vitgraph.SpecError) as info:
        vitgraph.load("<d>", text=text)
    message = str(info.value)
    assert message.startswith(f"<d>:{line_of(SPEC, 'id: encoder,') + 1}:")
    assert "encoder.0: levels 3 but the memory holds 4" in message
    assert message.endswith("hint: levels: 4, or change the input projection's levels")


def test_an_input_too_small_for_a_2x2_top_level_is_located_with_the_size_that_works():
    message = _error({"image_size": 64})
    assert "input_proj: level 3 is 1x1 (stride 64)" in message
    assert "hint: a larger input (128x128 keeps this level at least 2x2), or levels: 3" in message
    vitgraph.load("deformable_detr", overrides={"image_size": 96})  # C5 3x3 -> C6 2x2


def test_the_focal_heads_start_at_the_prior_probability():
    model = vitgraph.load("deformable_detr_refine", overrides=SMALL).build()
    for head in model.head.class_embed:
        torch.testing.assert_close(head.bias.sigmoid(), torch.full((3,), 0.01))
    # official: only the first refining box head starts its w, h at sigmoid(-2)
    assert getattr(model.decoder, "0").bbox_embed.layers[-1].bias.tolist() == [0, 0, -2, -2]
    assert getattr(model.decoder, "1").bbox_embed.layers[-1].bias.tolist() == [0, 0, 0, 0]


PVT_SMALL = "examples/detection/deformable_detr_pvt_small.yaml"


@pytest.mark.slow
def test_deformable_detr_on_pvt_small_counts_at_full_size():
    # 10,975,585 of Deformable DETR's transformer and heads, projections of PVT's 128,
    # 320, 512 channels (+ the strided level) 1,428,480, PVT-Small's stages at 512 px
    assert vitgraph.load(PVT_SMALL).summary().params == 38_017_633


def test_deformable_detr_on_pvt_small_runs_with_a_padding_mask():
    small = {"image_size": 128, "depths": [1, 1, 1, 1], "enc_layers": 1, "dec_layers": 1}
    graph = vitgraph.load(PVT_SMALL, overrides={**small, "queries": 5})
    model = graph.build().eval()
    assert graph.summary().params == sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 3, 128, 128)
    mask = torch.ones(2, 128, 128, dtype=torch.bool)
    mask[1, :, 64:] = False
    with torch.no_grad():
        logits, boxes = model(x, mask)
        plain = model(x)
    assert logits.shape == (2, 5, 91) and boxes.shape == (2, 5, 4)
    assert torch.equal(plain[0][0], logits[0]) and not torch.equal(plain[0][1], logits[1])


@pytest.mark.parametrize("variant", ["deformable_detr", "deformable_detr_refine"])
def test_a_one_layer_decoder_trains_with_empty_auxiliary_stacks(variant):
    overrides = {**DEFORMABLE_DETR_SMALL, "enc_layers": 1, "dec_layers": 1}
    model = vitgraph.load(variant, overrides=overrides).build().train()
    logits, boxes, aux_logits, aux_boxes = model(torch.randn(2, 3, 96, 96))
    assert aux_logits.shape == (0, *logits.shape) and aux_boxes.shape == (0, *boxes.shape)
    (logits.sum() + boxes.sum()).backward()
