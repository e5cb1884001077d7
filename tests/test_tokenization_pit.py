"""PiT (arXiv:2103.16302): the pit spec against timm's PoolingVisionTransformer.

Counts equal timm's to the unit; ``from_timm`` gives timm's logits for every ``pit_*``
model timm registers (reduced depth and resolution here, full size in the slow sweep).
"""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_

timm = pytest.importorskip("timm")

TIMM_PARAMS = {  # sum of numel over timm.create_model(name).parameters()
    "pit_ti": 4_847_272,
    "pit_xs": 10_618_888,
    "pit_s": 23_461_912,
    "pit_b": 73_764_840,
    "pit_ti_distilled": 5_104_336,
    "pit_xs_distilled": 11_003_984,
    "pit_s_distilled": 24_039_056,
    "pit_b_distilled": 74_790_096,
}
PAPER_GMACS = {"pit_ti": 0.71, "pit_xs": 1.4, "pit_s": 2.9, "pit_b": 12.5}  # Table 3
TIMM_NAMES = sorted(timm.list_models("pit_*"))


def test_every_timm_pit_model_has_a_variant():
    assert sorted(n.removesuffix("_224") for n in TIMM_NAMES) == sorted(TIMM_PARAMS)


@pytest.mark.parametrize("variant", sorted(TIMM_PARAMS))
def test_pit_count_equals_timm_to_the_unit(variant):
    assert vitgraph.load(variant).summary().params == TIMM_PARAMS[variant]


@pytest.mark.parametrize("variant", sorted(PAPER_GMACS))
def test_pit_macs_are_within_ten_percent_of_the_paper(variant):
    macs = vitgraph.load(variant).summary().macs / 1e9
    assert abs(macs - PAPER_GMACS[variant]) / PAPER_GMACS[variant] < 0.10


def test_pit_ti_grid_is_27_then_14_then_7_with_widths_64_128_256():
    graph = vitgraph.load("pit_ti")
    assert graph.type_of("pos_embed").grid == (27, 27)
    assert graph.type_of("transformers.1.pool").grid == (14, 14)
    assert graph.type_of("transformers.2.pool").grid == (7, 7)
    assert [graph.type_of(f"transformers.{i}").dim for i in range(3)] == [64, 128, 256]


@pytest.mark.parametrize("variant", sorted(TIMM_PARAMS))
def test_pit_variant_runs_forward_and_backward_at_a_small_size(variant):
    model = vitgraph.load(variant, overrides={"image_size": 48, "depths": [1, 1, 1]}).build()
    out = model(torch.randn(2, 3, 48, 48))
    loss = sum(o.sum() for o in out) if isinstance(out, tuple) else out.sum()
    loss.backward()
    assert model.get_parameter("transformers.2.pool.fc.weight").grad is not None


def _reduced(name: str) -> torch.nn.Module:
    return timm.create_model(name, pretrained=False, img_size=64, depth=[1, 1, 1]).eval()


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_from_timm_gives_timm_logits_on_a_reduced_copy(name):
    reference = redraw_(_reduced(name))
    ours = vitgraph.from_timm(reference)
    assert set(ours.state_dict()) == set(reference.state_dict()) - {
        "patch_embed.conv.weight",
        "patch_embed.conv.bias",
    } | {"patch_embed.proj.weight", "patch_embed.proj.bias"}
    assert_same_logits(ours, reference, torch.randn(2, 3, 64, 64))


def test_from_timm_on_a_non_square_input_with_dropouts_and_drop_path():
    reference = redraw_(
        timm.create_model(
            "pit_xs_224",
            pretrained=False,
            img_size=(48, 80),
            depth=[1, 1, 2],
            drop_path_rate=0.2,
            pos_drop_rate=0.1,
            drop_rate=0.1,
            num_classes=7,
        )
    ).eval()
    ours = vitgraph.from_timm(reference)
    assert_same_logits(ours, reference, torch.randn(2, 3, 48, 80))
    rates = [m.rate for n, m in ours.named_modules() if type(m).__name__ == "DropPath"]
    assert rates == pytest.approx([0.2 / 3] * 2 + [0.4 / 3] * 2 + [0.2] * 2)  # both branches


def test_distilled_pit_returns_both_heads_in_training_like_timm():
    reference = redraw_(_reduced("pit_ti_distilled_224"))
    reference.set_distilled_training(True)
    ours = vitgraph.from_timm(reference.train())
    x = torch.randn(2, 3, 64, 64)
    reference.eval()
    ours.eval()
    reference.train()
    ours.train()
    with torch.no_grad():
        theirs_out, ours_out = reference(x), ours(x)
    assert isinstance(ours_out, tuple) and len(ours_out) == 2
    for a, b in zip(ours_out, theirs_out, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", TIMM_NAMES)
def test_from_timm_gives_timm_logits_at_full_size(name):
    torch.manual_seed(0)
    reference = redraw_(timm.create_model(name, pretrained=False)).eval()
    ours = vitgraph.from_timm(reference)
    assert sum(p.numel() for p in ours.parameters()) == TIMM_PARAMS[name.removesuffix("_224")]
    diff = assert_same_logits(ours, reference, torch.randn(2, 3, 224, 224))
    print(f"{name}: max |diff| {diff:.2e}")
