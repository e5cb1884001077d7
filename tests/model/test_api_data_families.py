"""Each family's spec declares the pre-processing of its timm twin's weights (``data:``):
our ``pretrained_cfg`` feeds timm's ``resolve_data_config`` the same input size,
mean/std, crop ratio and interpolation as timm's own config of the matching model."""

from __future__ import annotations

import pytest

import vitgraph

timm = pytest.importorskip("timm")

#: our variant -> timm's pretrained tag of the same model
MATCHING = {
    "pit_ti": "pit_ti_224.in1k",
    "pit_s_distilled": "pit_s_distilled_224.in1k",
    "cait_xxs24": "cait_xxs24_224.fb_dist_in1k",
    "cait_s24_384": "cait_s24_384.fb_dist_in1k",
    "twins_svt_s": "twins_svt_small.in1k",
    "twins_pcpvt_b": "twins_pcpvt_base.in1k",
    "swin_t": "swin_tiny_patch4_window7_224.ms_in1k",
    "swin_b": "swin_base_patch4_window7_224.ms_in22k_ft_in1k",
    "tnt_s": "tnt_s_patch16_224.in1k",
    "tnt_b": "tnt_b_patch16_224.in1k",
    "crossvit_ti": "crossvit_tiny_240.in1k",
    "crossvit_18_dagger": "crossvit_18_dagger_240.in1k",
    "levit_128s": "levit_128s.fb_dist_in1k",
    "levit_384": "levit_384.fb_dist_in1k",
    "botnet26t_256": "botnet26t_256.c1_in1k",
    "botnet50ts_256": "botnet50ts_256",
}
KEYS = ("input_size", "mean", "std", "crop_pct", "interpolation", "crop_mode", "num_classes")


@pytest.mark.parametrize("ours", sorted(MATCHING))
def test_pretrained_cfg_declares_timms_preprocessing(ours):
    from timm.models import get_pretrained_cfg

    expected = get_pretrained_cfg(MATCHING[ours]).to_dict()
    cfg = vitgraph.load(ours).build(device="meta").pretrained_cfg
    assert {k: cfg[k] for k in KEYS} == {k: expected[k] for k in KEYS}


@pytest.mark.parametrize("ours", sorted(MATCHING))
def test_resolve_data_config_gives_timms_transform_settings(ours):
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    model = vitgraph.load(ours).build(device="meta")
    theirs = resolve_data_config({}, pretrained_cfg=get_pretrained_cfg(MATCHING[ours]).to_dict())
    assert resolve_data_config({}, model=model) == theirs
