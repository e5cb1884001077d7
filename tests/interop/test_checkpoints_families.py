"""``load_weights`` at another resolution for the families with relative-bias or
absolute position tables: a timm checkpoint saved at one size loads into ours at another
and gives the logits of timm's model loaded with the same resampled tables; the
resamplers equal timm's functions."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from vitgraph.resample import resize_offset_table, resize_relative_bias_table

timm = pytest.importorskip("timm")
from timm.layers import resample_abs_pos_embed  # noqa: E402
from timm.layers.pos_embed_rel import (  # noqa: E402
    resize_rel_pos_bias_table,
    resize_rel_pos_bias_table_levit,
)


@pytest.mark.parametrize(("old", "new"), [(7, 12), (12, 7), (7, 4), (4, 8), (7, 7)])
def test_window_bias_table_resizes_as_timms_resize_rel_pos_bias_table(old, new):
    table = torch.randn((2 * old - 1) ** 2, 3)
    theirs = resize_rel_pos_bias_table(table, (new, new), ((2 * new - 1) ** 2, 3))
    ours = resize_relative_bias_table(table, (new, new))
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() <= 1e-6


@pytest.mark.parametrize(("old", "new"), [(7, 4), (4, 7), (14, 7), (4, 4)])
def test_levit_offset_table_resizes_as_timms_levit_resize(old, new):
    table = torch.randn(4, old * old)
    theirs = resize_rel_pos_bias_table_levit(table.T, (new * new, 4)).T
    assert torch.equal(resize_offset_table(table, (new, new)), theirs)


def save(model: torch.nn.Module, path) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(state, path)
    return state


def load_resampled(target: torch.nn.Module, state: dict[str, torch.Tensor], resize) -> None:
    """timm's model at the new size, the checkpoint loaded with ``resize(key, tensor,
    wanted_shape)`` (timm's function) applied wherever the shape changed."""
    wanted = target.state_dict()
    fitted = {
        k: v if v.shape == wanted[k].shape else resize(k, v, wanted[k].shape)
        for k, v in state.items()
    }
    target.load_state_dict(fitted)


SWIN = {"depths": (1, 2, 2, 1), "embed_dim": 32, "num_heads": (1, 2, 4, 8), "num_classes": 10}


def test_swin_checkpoint_at_window_7_loads_at_window_4_with_timms_logits(tmp_path):
    name = "swin_tiny_patch4_window7_224"
    source = redraw_(timm.create_model(name, pretrained=False, img_size=112, **SWIN))
    state = save(source, tmp_path / "swin.pth")
    target = timm.create_model(name, pretrained=False, img_size=128, window_size=4, **SWIN)
    from timm.models.swin_transformer import checkpoint_filter_fn

    target.load_state_dict(checkpoint_filter_fn(dict(state), target))
    ours = vitgraph.from_timm(
        redraw_(timm.create_model(name, pretrained=False, img_size=128, window_size=4, **SWIN))
    )
    report = vitgraph.load_weights(ours, tmp_path / "swin.pth", timm_name=name)
    assert report.ok
    # six tables; the last stage's window was already clamped to its 4x4 grid at 112 px
    assert len(report.resampled) == 5
    assert all(k.endswith("relative_position_bias_table") for k in report.resampled)
    assert_same_logits(ours.eval(), target.eval(), torch.randn(2, 3, 128, 128))


def test_levit_checkpoint_at_64_loads_at_96_with_timms_logits(tmp_path):
    name, small = "levit_128s", {"depth": (1, 1, 1), "num_classes": 10}
    source = redraw_(timm.create_model(name, pretrained=False, img_size=64, **small))
    state = save(source, tmp_path / "levit.pth")
    target = timm.create_model(name, pretrained=False, img_size=96, **small)
    load_resampled(
        target, state, lambda k, v, shape: resize_rel_pos_bias_table_levit(v.T, shape[::-1]).T
    )
    ours = vitgraph.from_timm(
        redraw_(timm.create_model(name, pretrained=False, img_size=96, **small))
    )
    report = vitgraph.load_weights(ours, tmp_path / "levit.pth", timm_name=name)
    assert report.ok
    assert len(report.resampled) == 5  # three blocks, two shrinking attentions
    assert_same_logits(ours.eval(), target.eval(), torch.randn(2, 3, 96, 96))


def _abs(prefix: int):
    def resize(key, table, shape):
        side = int((shape[1] - prefix) ** 0.5)
        return resample_abs_pos_embed(table, [side, side], num_prefix_tokens=prefix)

    return resize


@pytest.mark.parametrize(
    ("name", "small", "sizes", "prefix"),
    [
        ("cait_xxs24_224", {"depth": 2, "embed_dim": 32, "num_heads": 4}, (32, 48), 0),
        ("tnt_s_patch16_224", {"depth": 2}, (64, 96), 1),
    ],
)
def test_absolute_table_checkpoint_loads_at_another_size_with_timms_logits(
    tmp_path, name, small, sizes, prefix
):
    old, new = sizes
    source = redraw_(
        timm.create_model(name, pretrained=False, img_size=old, num_classes=10, **small)
    )
    state = save(source, tmp_path / "abs.pth")
    target = timm.create_model(name, pretrained=False, img_size=new, num_classes=10, **small)
    load_resampled(target, state, _abs(prefix))
    ours = vitgraph.from_timm(
        redraw_(timm.create_model(name, pretrained=False, img_size=new, num_classes=10, **small))
    )
    report = vitgraph.load_weights(ours, tmp_path / "abs.pth", timm_name=name)
    assert report.ok and len(report.resampled) == 1
    assert_same_logits(ours.eval(), target.eval(), torch.randn(2, 3, new, new))


def test_botnet_checkpoint_at_128_loads_at_160_resampling_its_relative_tables(tmp_path):
    """timm has no resampler for BoTNet's 1-D relative tables; ours (linear along the
    offsets, ends kept) fills timm's model at the new size and ours alike."""
    from vitgraph.resample import resize_offset_rows

    name = "botnet26t_256"
    source = redraw_(timm.create_model(name, pretrained=False, img_size=128, num_classes=10))
    state = save(source, tmp_path / "bot.pth")
    target = timm.create_model(name, pretrained=False, img_size=160, num_classes=10)
    load_resampled(target, state, lambda k, v, shape: resize_offset_rows(v, shape[0]))
    ours = vitgraph.from_timm(
        redraw_(timm.create_model(name, pretrained=False, img_size=160, num_classes=10))
    )
    report = vitgraph.load_weights(ours, tmp_path / "bot.pth", timm_name=name)
    assert report.ok and len(report.resampled) == 6  # height and width, three BoT blocks
    assert all(k.endswith(("height_rel", "width_rel")) for k in report.resampled)
    assert_same_logits(ours.eval(), target.eval(), torch.randn(2, 3, 160, 160))
    table = torch.arange(7.0)[:, None].repeat(1, 2)
    assert torch.allclose(resize_offset_rows(table, 9)[:, 0], torch.linspace(0, 6, 9))
