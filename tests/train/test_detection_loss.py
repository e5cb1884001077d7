"""DETR's set loss (vitgraph/train/objectives/detection.py): the Hungarian matcher equals
brute force over permutations, GIoU equals torchvision's, and the loss terms equal HF's
``loss_dict`` on the same predictions and targets (auxiliary layers included)."""

from __future__ import annotations

import itertools

import pytest
import torch

from vitgraph.train.objectives.detection import (
    cxcywh_to_xyxy,
    generalized_box_iou,
    hungarian_match,
    set_criterion,
)

pytest.importorskip("scipy")


def _boxes(n: int, gen: torch.Generator) -> torch.Tensor:
    """n valid cx, cy, w, h boxes inside the unit square."""
    wh = torch.rand(n, 2, generator=gen) * 0.4 + 0.05
    centre = wh / 2 + torch.rand(n, 2, generator=gen) * (1 - wh)
    return torch.cat([centre, wh], dim=1)


def _case(seed: int, batch: int = 2, queries: int = 4, classes: int = 3, layers: int = 1):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(layers, batch, queries, classes + 1, generator=gen)
    boxes = torch.stack(
        [torch.stack([_boxes(queries, gen) for _ in range(batch)]) for _ in range(layers)]
    )
    targets = []
    for k in range(batch):
        count = 3 - k % 2  # 3 and 2 boxes
        labels = torch.randint(0, classes, (count,), generator=gen)
        targets.append({"labels": labels, "boxes": _boxes(count, gen)})
    return logits, boxes, targets


def _cost(logits, boxes, target, rows, cols) -> float:
    prob = logits.softmax(-1)
    total = 0.0
    for q, t in zip(rows, cols, strict=True):
        gt = target["boxes"][t]
        giou = generalized_box_iou(cxcywh_to_xyxy(boxes[q][None]), cxcywh_to_xyxy(gt[None]))[0, 0]
        total += 5 * (boxes[q] - gt).abs().sum() - prob[q, target["labels"][t]] - 2 * giou
    return float(total)


@pytest.mark.parametrize("seed", range(5))
def test_the_matching_has_the_least_cost_of_every_assignment(seed):
    logits, boxes, targets = _case(seed)
    matches = hungarian_match(logits[0], boxes[0], targets)
    for k, (rows, cols) in enumerate(matches):
        target = targets[k]
        found = _cost(logits[0, k], boxes[0, k], target, rows.tolist(), cols.tolist())
        best = min(
            _cost(logits[0, k], boxes[0, k], target, list(queries), list(range(len(queries))))
            for queries in itertools.permutations(range(4), len(target["labels"]))
        )
        assert found == pytest.approx(best, abs=1e-5)


def test_permuting_the_targets_permutes_the_assignment():
    logits, boxes, targets = _case(7)
    order = torch.tensor([2, 0, 1])
    permuted = [{"labels": targets[0]["labels"][order], "boxes": targets[0]["boxes"][order]}]
    ((rows, cols),) = hungarian_match(logits[0, :1], boxes[0, :1], targets[:1])
    ((rows_p, cols_p),) = hungarian_match(logits[0, :1], boxes[0, :1], permuted)
    before = dict(zip(cols.tolist(), rows.tolist(), strict=True))
    after = dict(zip(cols_p.tolist(), rows_p.tolist(), strict=True))
    assert {int(order[t]): q for t, q in after.items()} == before


def test_generalized_iou_equals_torchvision_and_is_one_for_the_same_box():
    ops = pytest.importorskip("torchvision.ops")
    gen = torch.Generator().manual_seed(0)
    a, b = cxcywh_to_xyxy(_boxes(6, gen)), cxcywh_to_xyxy(_boxes(5, gen))
    torch.testing.assert_close(generalized_box_iou(a, b), ops.generalized_box_iou(a, b))
    torch.testing.assert_close(torch.diag(generalized_box_iou(a, a)), torch.ones(6))


def test_the_loss_terms_equal_hf_loss_dict_with_the_auxiliary_layers():
    transformers = pytest.importorskip("transformers")
    from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

    logits, boxes, targets = _case(3, queries=6, layers=3)
    config = transformers.DetrConfig(num_labels=3, auxiliary_loss=True, decoder_layers=3)
    labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
    loss, theirs, _ = ForObjectDetectionLoss(
        logits[-1], labels, "cpu", boxes[-1], config, logits, boxes
    )
    total, ours = set_criterion((logits[-1], boxes[-1], logits[:-1], boxes[:-1]), targets)
    assert set(ours) == set(theirs)
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], msg=key)
    torch.testing.assert_close(total, loss)
