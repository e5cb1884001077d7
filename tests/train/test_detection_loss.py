"""DETR's set loss (vitgraph/train/objectives/detection.py): the Hungarian matcher equals
brute force over permutations, GIoU equals torchvision's, and the loss terms equal HF's
``loss_dict`` on the same predictions and targets (auxiliary layers included); Deformable
DETR's focal criterion likewise against HF's, its matching by brute force, and the
two-stage proposals' class-agnostic terms."""

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


# -- Deformable DETR's focal criterion ------------------------------------------------------


def _focal_case(seed: int, layers: int = 3, queries: int = 6, classes: int = 3):
    logits, boxes, targets = _case(seed, queries=queries, classes=classes, layers=layers)
    return logits[..., :classes], boxes, targets  # per-class sigmoids: no "no object"


def test_the_focal_loss_terms_equal_hfs_with_the_official_weights():
    transformers = pytest.importorskip("transformers")
    from transformers.loss.loss_deformable_detr import DeformableDetrForObjectDetectionLoss

    logits, boxes, targets = _focal_case(3)
    # the official costs (class 2, L1 5, GIoU 2); HF's class *weight* is fixed at 1, so
    # the terms are compared, and HF's total with the terms at class weight 1
    config = transformers.DeformableDetrConfig(
        num_labels=3,
        auxiliary_loss=True,
        decoder_layers=3,
        class_cost=2,
        bbox_cost=5,
        giou_cost=2,
        focal_alpha=0.25,
    )
    labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
    loss, theirs, _ = DeformableDetrForObjectDetectionLoss(
        logits[-1], labels, "cpu", boxes[-1], config, logits, boxes
    )
    outputs = (logits[-1], boxes[-1], logits[:-1], boxes[:-1])
    total, ours = set_criterion(outputs, targets, focal=True)
    assert set(ours) == set(theirs)
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], msg=key)
    # HF's total: the same terms at its class weight 1
    hf_total = sum(
        ours[f"loss_ce{s}"] + 5 * ours[f"loss_bbox{s}"] + 2 * ours[f"loss_giou{s}"]
        for s in ("", "_0", "_1")
    )
    torch.testing.assert_close(hf_total, loss)
    # the official weights: class 2
    expected = sum(
        2 * ours[f"loss_ce{s}"] + 5 * ours[f"loss_bbox{s}"] + 2 * ours[f"loss_giou{s}"]
        for s in ("", "_0", "_1")
    )
    torch.testing.assert_close(total, expected)


def test_the_focal_matching_uses_the_focal_class_cost_with_weight_two():
    logits, boxes, targets = _focal_case(5, layers=1)
    p = logits[0].sigmoid()
    cost_of = (0.25 * (1 - p) ** 2 * -(p + 1e-8).log()) - (0.75 * p**2 * -(1 - p + 1e-8).log())
    for k, (rows, cols) in enumerate(
        hungarian_match(logits[0], boxes[0], targets, class_cost=2, focal=True)
    ):
        target = targets[k]

        def total(queries, k=k, target=target):
            cost = 0.0
            for q, t in zip(queries, range(len(target["labels"])), strict=True):
                gt = target["boxes"][t]
                pair = cxcywh_to_xyxy(torch.stack([boxes[0, k, q], gt]))
                giou = generalized_box_iou(pair[:1], pair[1:])[0, 0]
                cost += 5 * (boxes[0, k, q] - gt).abs().sum() - 2 * giou
                cost += 2 * cost_of[k, q, target["labels"][t]]
            return float(cost)

        best = min(total(list(q)) for q in itertools.permutations(range(6), len(target["labels"])))
        order = dict(zip(cols.tolist(), rows.tolist(), strict=True))
        assert total([order[t] for t in range(len(target["labels"]))]) == pytest.approx(
            best, abs=1e-5
        )


def test_two_stage_proposals_add_class_agnostic_terms():
    logits, boxes, targets = _focal_case(4)
    proposals, proposal_boxes, _ = _focal_case(9, layers=1, queries=10)
    outputs = (logits[-1], boxes[-1], logits[:-1], boxes[:-1], proposals[0], proposal_boxes[0])
    total, terms = set_criterion(outputs, targets, focal=True)
    agnostic = [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets]
    _, alone = set_criterion((proposals[0], proposal_boxes[0]), agnostic, focal=True)
    for key in ("loss_ce", "loss_bbox", "loss_giou"):
        torch.testing.assert_close(terms[f"{key}_enc"], alone[key])
    _, decoder = set_criterion(outputs[:4], targets, focal=True)
    enc = 2 * alone["loss_ce"] + 5 * alone["loss_bbox"] + 2 * alone["loss_giou"]
    torch.testing.assert_close(total, decoder_total(decoder) + enc)


def decoder_total(terms) -> torch.Tensor:
    return sum(
        2 * terms[f"loss_ce{s}"] + 5 * terms[f"loss_bbox{s}"] + 2 * terms[f"loss_giou{s}"]
        for s in ("", "_0", "_1")
    )
