"""Stochastic depth per node, family by family, against the reference built with a
drop-path rate: every drop-path rate of the shipped spec (its ``stochastic_depth:``
schedule, or the explicit form CaiT, LeViT and CvT keep) equals the reference module's
``drop_prob`` at the same place (an ``nn.Identity`` there: 0). The references compute
their ramps in float32 (``torch.linspace``), so rates agree to float32 precision."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from torch import nn

import vitgraph
from vitgraph.vocabulary import stochastic_depth_fields

timm = pytest.importorskip("timm")

RATE = 0.3


def ours(variant: str, **overrides) -> dict[str, float]:
    """Every drop-path rate of the spec's nodes: node id -> rate."""
    graph = vitgraph.load(variant, overrides={"drop_path_rate": RATE, **overrides})
    rates = {}
    for node in graph.nodes:
        for field in stochastic_depth_fields(type(node.params)):
            rates[node.id] = getattr(node.params, field)
    return rates


def theirs(model: nn.Module) -> dict[str, float]:
    """Every drop-path module of a reference: name -> drop probability (Identity: 0)."""
    return {
        name: float(getattr(module, "drop_prob", 0.0))
        for name, module in model.named_modules()
        if re.search(r"drop_path\d?$", name)
    }


def assert_same_rates(
    mine: dict[str, float], reference: dict[str, float], rename: Callable[[str], str]
) -> None:
    assert max(mine.values()) == pytest.approx(RATE)  # the test does test a ramp
    translated: dict[str, set[float]] = {}
    for node_id, rate in mine.items():
        translated.setdefault(rename(node_id), set()).add(rate)
    assert sorted(translated) == sorted(reference)
    for name, rates in translated.items():
        assert len(rates) == 1, (name, rates)  # one rate per reference module
        assert rates.pop() == pytest.approx(reference[name], rel=1e-6, abs=1e-9), name


def timm_twin(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return timm.create_model(name, drop_path_rate=RATE, **kwargs)


def _same(node_id: str) -> str:
    return node_id


TIMM = {
    # family: (our variant, timm model, our node id -> timm module name)
    "vit": ("vit_s_16", "vit_small_patch16_224", _same),
    "deit": ("deit_ti_distilled", "deit_tiny_distilled_patch16_224", _same),
    "pit": ("pit_s", "pit_s_224", _same),
    "swin": ("swin_t", "swin_tiny_patch4_window7_224", _same),
    "twins_svt": (
        "twins_svt_s",
        "twins_svt_small",
        lambda n: re.sub(
            r"^stage(\d)\.(?:first|blocks\.(\d+))\.",
            lambda m: f"blocks.{int(m[1]) - 1}.{0 if m[2] is None else int(m[2]) + 1}.",
            n,
        ),
    ),
    "twins_pcpvt": (
        "twins_pcpvt_s",
        "twins_pcpvt_small",
        lambda n: re.sub(
            r"^stage(\d)\.(?:first|blocks\.(\d+))\.",
            lambda m: f"blocks.{int(m[1]) - 1}.{0 if m[2] is None else int(m[2]) + 1}.",
            n,
        ),
    ),
    "tnt": ("tnt_s", "tnt_s_patch16_224", lambda n: re.sub(r"drop_path_\w+$", "drop_path", n)),
    "crossvit": (
        "crossvit_15",
        "crossvit_15_240",
        lambda n: re.sub(
            r"\.fusion_small$",
            ".fusion.0.drop_path",
            re.sub(
                r"\.fusion_large$",
                ".fusion.1.drop_path",
                n.replace(".blocks_small.", ".blocks.0.").replace(".blocks_large.", ".blocks.1."),
            ),
        ),
    ),
    # explicit forms: one constant rate (CaiT's class-attention layers: none)
    "cait": ("cait_xxs24", "cait_xxs24_224", lambda n: re.sub(r"drop_path\d$", "drop_path", n)),
    "levit": (
        "levit_128s",
        "levit_128s",
        lambda n: re.sub(
            r"^down(\d)\.",
            r"stages.\1.downsample.",
            re.sub(r"^stage(\d)\.", r"stages.\1.blocks.", n),
        ),
    ),
}


@pytest.mark.parametrize("family", sorted(TIMM))
def test_every_drop_path_rate_is_the_timm_twins(family):
    variant, name, rename = TIMM[family]
    assert_same_rates(ours(variant), theirs(timm_twin(name)), rename)


def test_crossvit_branches_share_each_row_and_the_fusion_takes_the_last():
    rates = ours("crossvit_9")  # 3 encoders of max(1, 3) = 3 rows: 9 layers
    step = RATE / 8
    for e in range(3):
        assert rates[f"blocks.{e}.blocks_small.0.drop_path1"] == pytest.approx(3 * e * step)
        assert rates[f"blocks.{e}.blocks_large.0.drop_path1"] == pytest.approx(3 * e * step)
        assert rates[f"blocks.{e}.blocks_large.2.drop_path2"] == pytest.approx((3 * e + 2) * step)
        assert rates[f"blocks.{e}.fusion_small"] == pytest.approx((3 * e + 2) * step)


def test_pvt_rates_are_the_hugging_face_twins():
    transformers = pytest.importorskip("transformers")
    config = transformers.PvtConfig(drop_path_rate=RATE)  # PVT-Tiny
    with torch.device("meta"):
        reference = transformers.PvtForImageClassification(config)
    assert_same_rates(
        ours("pvt_tiny"),
        theirs(reference),
        lambda n: re.sub(
            r"^stages\.(\d)\.blocks\.(\d+)\.drop_path\d$", r"pvt.encoder.block.\1.\2.drop_path", n
        ),
    )


def test_cvt_keeps_the_official_ramp_within_its_last_stage():
    """microsoft/CvT (lib/models/cls_cvt.py): each stage ramps ``linspace(0, rate, depth)``
    over its own layers, with DROP_PATH_RATE [0, 0, rate]. (HF's CvtStage gives every
    layer of a stage the stage's index into that ramp, so it is no reference here.)"""
    depths = [1, 2, 10]  # CvT-13
    expected = {}
    for stage, (depth, rate) in enumerate(zip(depths, [0.0, 0.0, RATE], strict=True)):
        for j, value in enumerate(torch.linspace(0, rate, depth).tolist()):
            expected[f"stage{stage}.blocks.{j}"] = value
    assert_same_rates(ours("cvt_13"), expected, lambda n: n.rsplit(".", 1)[0])


def test_lvvit_rates_are_the_official_tlt_twins():
    models = pytest.importorskip("tlt.models")
    reference = models.lvvit_s(drop_path_rate=RATE)
    assert_same_rates(
        ours("lv_vit_s"), theirs(reference), lambda n: re.sub(r"drop_path\d$", "drop_path", n)
    )
