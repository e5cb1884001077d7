"""HF ``DeformableDetrForObjectDetection`` -> vitgraph
(``vitgraph/interop/hf_deformable_detr.py``): tiny configs (multi-scale, refinement,
two-stage) with every parameter and frozen-BN buffer re-drawn give HF's logits and boxes
in fp32 eval with a padding mask; the option audit's refusals name the option."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import max_logit_diff
from tests.references import deformable_detr_tiny
from vitgraph.errors import SpecError

transformers = pytest.importorskip("transformers")

VARIANTS = {
    "multi_scale": {},
    "refine": {"with_box_refine": True},
    "two_stage": {"with_box_refine": True, "two_stage": True},
}


def _padded_batch(size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Two images, the second padded on the right half and the bottom third (its 2x2
    fourth level then holds one valid pixel)."""
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, size, size, dtype=torch.long)
    mask[1, :, size // 2 :] = 0
    mask[1, 2 * size // 3 :, :] = 0
    return x, mask


def _diff(reference, ours, x, mask) -> tuple[float, float]:
    with torch.no_grad():
        theirs = reference(pixel_values=x, pixel_mask=mask)
        logits, boxes = ours(x, mask.bool())
    return max_logit_diff((logits, boxes), (theirs.logits, theirs.pred_boxes))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tiny_hf_deformable_detr_gives_the_same_logits_and_boxes_with_a_padding_mask(variant):
    reference = deformable_detr_tiny(**VARIANTS[variant])
    ours = vitgraph.from_hf(reference).eval()
    args = ours.vitgraph_graph.args
    assert (args["refine"], args["two_stage"]) == (variant != "multi_scale", variant == "two_stage")
    # HF ties refine's class heads (not two-stage's): the twin holds what HF holds
    assert args["class_heads"] == ("per_layer" if variant == "two_stage" else "shared")
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )
    x, mask = _padded_batch()
    diff, allowed = _diff(reference, ours, x, mask)
    assert diff <= allowed, f"differ by {diff:.3e} (allowed {allowed:.3e})"
    with torch.no_grad():  # the mask changes the padded image's predictions only
        plain, masked = ours(x), ours(x, mask.bool())
    assert torch.equal(plain[0][0], masked[0][0])
    assert (plain[0][1] - masked[0][1]).abs().max() > 1e-3


def _refusals() -> list:
    from vitgraph.interop.options_hf import DEFORMABLE_DETR

    return [
        pytest.param(option, example, id=f"{option}-{k}")
        for option, entry in DEFORMABLE_DETR.items()
        for k, example in enumerate(entry.refuse)
    ]


@pytest.mark.parametrize(("option", "example"), _refusals())
def test_every_refused_option_of_the_audit_table_is_named_in_the_error(option, example):
    changes = dict(example)
    if changes.get("use_timm_backbone"):  # timm's resnet26, which HF builds offline
        changes.update(backbone="resnet26", backbone_config=None)
        pytest.importorskip("timm")
    reference = deformable_detr_tiny(**changes)
    with pytest.raises(SpecError) as error:
        vitgraph.from_hf(reference)
    message = str(error.value)
    assert "DeformableDetrForObjectDetection" in message
    assert option.split("_config")[0].split("_num_")[0] in message, message


def _honoured() -> list:
    from vitgraph.interop.options_hf import DEFORMABLE_DETR

    skip = {"backbone_config", "dtype"}  # the base's own; the dtype example is DETR's
    return [
        pytest.param(option, example, id=f"{option}-{k}")
        for option, entry in DEFORMABLE_DETR.items()
        if option not in skip
        for k, example in enumerate(entry.equal)
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("option", "example"), _honoured())
def test_every_honoured_option_of_the_audit_table_converts_to_the_same_function(option, example):
    reference = deformable_detr_tiny(**example)
    ours = vitgraph.from_hf(reference).eval()
    x, mask = _padded_batch()
    diff, allowed = _diff(reference, ours, x, mask)
    assert diff <= allowed, f"{option}: differ by {diff:.3e} (allowed {allowed:.3e})"
