"""HF ``DetrForObjectDetection`` -> vitgraph (``vitgraph/interop/hf_detr.py``): tiny configs
with re-drawn weights and frozen-BN buffers give HF's logits and boxes in fp32 eval, with
and without a padding mask; options the spec cannot express are refused by name."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import max_logit_diff, redraw_
from tests.references import DETR_TINY
from vitgraph.errors import SpecError

transformers = pytest.importorskip("transformers")
pytest.importorskip("timm")

#: timm's resnet26 (bottlenecks 2-2-2-2, ResNet-50's widths) keeps the reference small
TINY = DETR_TINY


def _reference(**changes):
    torch.manual_seed(0)
    config = transformers.DetrConfig(**{**TINY, **changes})
    return redraw_(transformers.DetrForObjectDetection(config)).eval()


def _padded_batch(size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Two images, the second padded on the right half and the bottom third."""
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, size, size, dtype=torch.long)
    mask[1, :, size // 2 :] = 0
    mask[1, 2 * size // 3 :, :] = 0
    return x, mask


def _assert_same(reference, ours, x, mask=None) -> None:
    with torch.no_grad():
        theirs = reference(pixel_values=x, pixel_mask=mask)
        logits, boxes = ours(x, None if mask is None else mask.bool())
    diff, allowed = max_logit_diff((logits, boxes), (theirs.logits, theirs.pred_boxes))
    assert diff <= allowed, f"differ by {diff:.3e} (allowed {allowed:.3e})"


@pytest.fixture(scope="module")
def plain():
    return _reference()


@pytest.mark.parametrize("dilation", [False, True], ids=["r26", "dc5_r26"])
def test_tiny_hf_detr_gives_the_same_logits_and_boxes_with_and_without_a_padding_mask(
    dilation, plain
):
    reference = _reference(dilation=True) if dilation else plain
    ours = vitgraph.from_hf(reference).eval()
    assert ours.vitgraph_graph.args["dc5"] is dilation
    assert ours.vitgraph_graph.args["depths"] == [2, 2, 2, 2]
    x, mask = _padded_batch()
    _assert_same(reference, ours, x)
    _assert_same(reference, ours, x, mask)
    with torch.no_grad():
        plain_out, masked = ours(x), ours(x, mask.bool())
        ones = ours(x, torch.ones_like(mask, dtype=torch.bool))
    # the mask changes the padded image's predictions only; an all-ones mask is no mask
    assert torch.equal(plain_out[0][0], masked[0][0])
    assert (plain_out[0][1] - masked[0][1]).abs().max() > 1e-3
    assert torch.equal(plain_out[0], ones[0]) and torch.equal(plain_out[1], ones[1])


def test_training_mode_adds_every_earlier_decoder_layers_predictions(plain):
    ours = vitgraph.from_hf(plain).train()
    x, _ = _padded_batch(64)
    logits, boxes, aux_logits, aux_boxes = ours(x)
    assert logits.shape == (2, 5, 4) and boxes.shape == (2, 5, 4)
    assert aux_logits.shape == (1, 2, 5, 4) and aux_boxes.shape == (1, 2, 5, 4)
    assert 0 < boxes.min() and boxes.max() < 1


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"position_embedding_type": "learned"}, "position_embedding_type='learned'"),
        ({"auxiliary_loss": True}, "auxiliary_loss=True"),
        ({"decoder_ffn_dim": 32}, "encoder_ffn_dim=64 with decoder_ffn_dim=32"),
        ({"encoder_layerdrop": 0.1}, "encoder_layerdrop=0.1"),
        (
            {"backbone_config": transformers.ResNetConfig(out_features=["stage4"])},
            "backbone_config of model_type 'resnet'",
        ),
    ],
)
def test_options_the_spec_cannot_express_are_refused_by_name(changes, named, plain):
    config = plain.config
    saved = {key: getattr(config, key) for key in changes}
    try:
        for key, value in changes.items():
            setattr(config, key, value)
        with pytest.raises(SpecError, match=named.replace("(", r"\(").replace("[", r"\[")):
            vitgraph.from_hf(plain)
    finally:
        for key, value in saved.items():
            setattr(config, key, value)


def _refusals() -> list:
    from vitgraph.interop.options_hf import DETR

    return [
        pytest.param(option, example, id=f"{option}-{k}")
        for option, entry in DETR.items()
        for k, example in enumerate(entry.refuse)
    ]


@pytest.mark.parametrize(("option", "example"), _refusals())
def test_every_refused_option_of_the_audit_table_is_named_in_the_error(option, example, plain):
    changes = {
        key: transformers.ResNetConfig() if value == "@ResNetConfig" else value
        for key, value in example.items()
    }
    config = plain.config
    saved = {key: getattr(config, key) for key in changes}
    try:
        for key, value in changes.items():
            setattr(config, key, value)
        with pytest.raises(SpecError) as error:
            vitgraph.from_hf(plain)
    finally:
        for key, value in saved.items():
            setattr(config, key, value)
    assert "DetrForObjectDetection" in str(error.value)
    assert option.split("_config")[0] in str(error.value)
