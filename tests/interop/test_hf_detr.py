"""HF ``DetrForObjectDetection`` -> vitgraph (``vitgraph/interop/hf_detr.py``): tiny configs
with re-drawn weights and frozen-BN buffers give HF's logits and boxes in fp32 eval, with
and without a padding mask; options the spec cannot express are refused by name."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from vitgraph.errors import SpecError
from tests.helpers import max_logit_diff, redraw_

transformers = pytest.importorskip("transformers")
pytest.importorskip("timm")

TINY = dict(
    d_model=32,
    encoder_layers=1,
    decoder_layers=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    num_queries=5,
    num_labels=3,
)


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


@pytest.mark.parametrize("dilation", [False, True], ids=["r50", "dc5_r50"])
def test_tiny_hf_detr_gives_the_same_logits_and_boxes_with_and_without_a_padding_mask(dilation):
    reference = _reference(dilation=dilation)
    ours = vitgraph.from_hf(reference).eval()
    assert ours.vitgraph_graph.args["dc5"] is dilation
    x, mask = _padded_batch()
    _assert_same(reference, ours, x)
    _assert_same(reference, ours, x, mask)
    # the mask changes the padded image's predictions, not the other one's
    with torch.no_grad():
        plain, masked = ours(x), ours(x, mask.bool())
    assert torch.equal(plain[0][0], masked[0][0])
    assert (plain[0][1] - masked[0][1]).abs().max() > 1e-3


def test_an_all_ones_mask_equals_no_mask():
    ours = vitgraph.from_hf(_reference()).eval()
    x, _ = _padded_batch(64)
    with torch.no_grad():
        a, b = ours(x), ours(x, torch.ones(2, 64, 64, dtype=torch.bool))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_training_mode_adds_every_earlier_decoder_layers_predictions():
    ours = vitgraph.from_hf(_reference(decoder_layers=3)).train()
    x, _ = _padded_batch(64)
    logits, boxes, aux_logits, aux_boxes = ours(x)
    assert logits.shape == (2, 5, 4) and boxes.shape == (2, 5, 4)
    assert aux_logits.shape == (2, 2, 5, 4) and aux_boxes.shape == (2, 2, 5, 4)
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
def test_options_the_spec_cannot_express_are_refused_by_name(changes, named):
    reference = transformers.DetrForObjectDetection(transformers.DetrConfig(**{**TINY, **changes}))
    with pytest.raises(SpecError, match=named.replace("(", r"\(").replace("[", r"\[")):
        vitgraph.from_hf(reference)
