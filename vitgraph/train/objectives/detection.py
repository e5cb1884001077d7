"""DETR's set prediction loss (Carion et al., arXiv:2005.12872 §3.1) as a training
objective, and COCO mAP as its held-out metric.

Each image's predictions are matched one-to-one to its ground-truth boxes by the
Hungarian algorithm (``scipy.optimize.linear_sum_assignment``, eq. 1) on the cost
``class_cost · (−p̂(c)) + bbox_cost · L1 + giou_cost · (−GIoU)``; the loss (eq. 2) is
cross-entropy over every query (the unmatched ones against "no object", weighted
``eos_coef`` = 0.1) plus, over the matched pairs, L1 and 1 − GIoU of the boxes, each
divided by the number of boxes. Every earlier decoder layer's predictions are matched
again and add the same terms (§3.2 "auxiliary decoding losses"). scipy and pycocotools
are the optional ``detection`` extra.

A head of per-class sigmoids (Deformable DETR, arXiv:2010.04159 §A.2; ``Detections.sigmoid``)
takes the official code's focal variant: the matching's class cost is the focal cost
``α(1−p)^γ(−log p) − (1−α)p^γ(−log(1−p))`` of the target class, the classification loss
the sigmoid focal loss (RetinaNet, α = 0.25, γ = 2) over every query and class divided by
the boxes, and the weights are the official ``main.py``'s: class 2, L1 5, GIoU 2 for both
the cost and the loss (HF's defaults differ: class cost 1, class weight 1). Two-stage
proposals add the same terms (suffix ``_enc``) against class-agnostic targets (every
label 0, as officially).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitgraph.ir import Validated
from vitgraph.shapes import Detections, Pyramid
from vitgraph.train.objectives import objective
from vitgraph.train.objectives.base import Objective

INSTALL = "pip install 'vitgraph[detection]'"


def _linear_sum_assignment():
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ImportError(f"DETR's Hungarian matching needs scipy: {INSTALL}") from exc
    return linear_sum_assignment


# -- boxes ---------------------------------------------------------------------------------


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise IoU ``(N, M)`` of xyxy boxes, and the union areas."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union, union


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise generalised IoU ``(N, M)`` of xyxy boxes (Rezatofighi et al. 2019):
    IoU − (enclosing area − union) / enclosing area."""
    iou, union = box_iou(a, b)
    lt = torch.min(a[:, None, :2], b[None, :, :2])
    rb = torch.max(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[..., 0] * wh[..., 1]
    return iou - (area - union) / area


# -- matching and the loss -------------------------------------------------------------------

Target = dict[str, torch.Tensor]  # "labels" (T,) int64 and "boxes" (T, 4) cx, cy, w, h


@torch.no_grad()
def hungarian_match(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    targets: list[Target],
    class_cost: float = 1.0,
    bbox_cost: float = 5.0,
    giou_cost: float = 2.0,
    focal: bool = False,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image, (query indices, target indices) of the assignment of least total cost
    (eq. 1; the official ``HungarianMatcher``; ``focal``: Deformable DETR's)."""
    assign = _linear_sum_assignment()
    out = []
    if focal:
        p = logits.float().sigmoid()
        positive = FOCAL_ALPHA * (1 - p) ** FOCAL_GAMMA * -(p + 1e-8).log()
        negative = (1 - FOCAL_ALPHA) * p**FOCAL_GAMMA * -(1 - p + 1e-8).log()
        prob = negative - positive  # minus the cost, as the softmax probability is
    else:
        prob = logits.float().softmax(-1)
    for k, target in enumerate(targets):
        labels, gt = target["labels"], target["boxes"].float()
        if len(labels) == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            out.append((empty, empty))
            continue
        pred = boxes[k].float()
        cost = (
            bbox_cost * torch.cdist(pred, gt, p=1)
            - class_cost * prob[k][:, labels]
            - giou_cost * generalized_box_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(gt))
        )
        rows, cols = assign(cost.cpu().numpy())
        out.append(
            (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
        )
    return out


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """RetinaNet's focal loss (Lin et al. 2017, eq. 5) of every logit, summed: binary
    cross-entropy scaled by ``(1 − p_t)^γ`` and weighted ``α`` for positives."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = FOCAL_ALPHA * targets + (1 - FOCAL_ALPHA) * (1 - targets)
    return (alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA).sum()


def set_loss_terms(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    targets: list[Target],
    matches: list[tuple[torch.Tensor, torch.Tensor]],
    num_boxes: float,
    eos_coef: float = 0.1,
    class_weight: float | None = None,
    focal: bool = False,
) -> dict[str, torch.Tensor]:
    """``loss_ce``, ``loss_bbox``, ``loss_giou`` and the logged ``cardinality_error`` of one
    layer's predictions under ``matches`` (eq. 2; HF's ``loss_dict`` keys). ``class_weight``
    divides the weighted cross-entropy sum (default: this batch's total class weight, i.e.
    ``F.cross_entropy``'s weighted mean, as the official code and HF). ``focal``: the
    sigmoid focal loss over every query and class, divided by ``num_boxes``."""
    device = logits.device
    if focal:
        return _focal_terms(logits, boxes, targets, matches, num_boxes)
    classes = logits.shape[-1] - 1  # the last is "no object"
    batch_idx = torch.cat([torch.full_like(q, k) for k, (q, _) in enumerate(matches)]).to(device)
    query_idx = torch.cat([q for q, _ in matches]).to(device)
    target_classes = torch.full(logits.shape[:2], classes, dtype=torch.int64, device=device)
    target_classes[batch_idx, query_idx] = torch.cat(
        [t["labels"][j.to(t["labels"].device)] for t, (_, j) in zip(targets, matches, strict=True)]
    ).to(device)
    weight = torch.ones(classes + 1, device=device)
    weight[-1] = eos_coef
    per_query = F.cross_entropy(
        logits.float().transpose(1, 2), target_classes, weight, reduction="none"
    )
    norm = weight[target_classes].sum() if class_weight is None else class_weight
    loss_ce = per_query.sum() / norm
    with torch.no_grad():
        count = (logits.argmax(-1) != classes).sum(1).float()
    return {"loss_ce": loss_ce, **_box_terms(boxes, targets, matches, num_boxes, count)}


def _box_terms(
    boxes: torch.Tensor,
    targets: list[Target],
    matches: list[tuple[torch.Tensor, torch.Tensor]],
    num_boxes: float,
    count: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """L1 and 1 − GIoU of the matched boxes, and the logged error of the predicted box
    count ``count`` (per image)."""
    device = boxes.device
    batch_idx = torch.cat([torch.full_like(q, k) for k, (q, _) in enumerate(matches)]).to(device)
    query_idx = torch.cat([q for q, _ in matches]).to(device)
    pred = boxes[batch_idx, query_idx].float()
    pairs = zip(targets, matches, strict=True)
    gt = torch.cat([t["boxes"][j.to(t["boxes"].device)] for t, (_, j) in pairs])
    gt = gt.to(device).float()
    loss_bbox = F.l1_loss(pred, gt, reduction="none").sum() / num_boxes
    giou = torch.diag(generalized_box_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(gt)))
    loss_giou = (1 - giou).sum() / num_boxes
    lengths = torch.as_tensor([len(t["labels"]) for t in targets], device=device).float()
    return {
        "loss_bbox": loss_bbox,
        "loss_giou": loss_giou,
        "cardinality_error": F.l1_loss(count, lengths),
    }


def _focal_terms(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    targets: list[Target],
    matches: list[tuple[torch.Tensor, torch.Tensor]],
    num_boxes: float,
) -> dict[str, torch.Tensor]:
    """Deformable DETR's terms: the focal loss of one-hot targets (a matched query's class
    1, everything else 0), summed over queries and classes and divided by the boxes
    (official ``loss_labels``: its ``mean(1).sum() · queries``)."""
    device = logits.device
    onehot = torch.zeros_like(logits, dtype=torch.float32)
    for k, (t, (q, j)) in enumerate(zip(targets, matches, strict=True)):
        onehot[k, q.to(device), t["labels"][j.to(t["labels"].device)].to(device)] = 1.0
    loss_ce = sigmoid_focal_loss(logits.float(), onehot) / num_boxes
    with torch.no_grad():  # a query counts when some class's probability passes 0.5
        count = (logits.sigmoid().amax(-1) > 0.5).sum(1).float()
    return {"loss_ce": loss_ce, **_box_terms(boxes, targets, matches, num_boxes, count)}


#: eq. 2's weights (official ``main.py``: ce 1, bbox 5, giou 2)
WEIGHTS = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
#: the "no object" class's weight in the cross-entropy (official ``eos_coef``)
EOS_COEF = 0.1
#: Deformable DETR's weights, of the matching costs and of the loss alike (official
#: ``main.py``: set_cost_class / cls_loss_coef 2, bbox 5, giou 2)
FOCAL_WEIGHTS = {"loss_ce": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0}
#: the focal loss's α and γ (official ``focal_alpha`` 0.25; γ 2 as RetinaNet)
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0


def set_criterion(
    outputs: tuple[torch.Tensor, ...],
    targets: list[Target],
    weights: dict[str, float] | None = None,
    eos_coef: float = EOS_COEF,
    num_boxes: float | None = None,
    class_weight: float | None = None,
    focal: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted total and every term, the last layer's and (training outputs) each
    earlier layer's re-matched ones with the suffix ``_k``, and two-stage proposals'
    (``outputs[4:6]``) with ``_enc``. ``num_boxes``: the boxes of the whole (distributed)
    batch per process; default this batch's, at least 1. ``class_weight``: the
    cross-entropy's normaliser, likewise (default: this batch's). ``focal``: Deformable
    DETR's criterion (its weights unless ``weights`` are given)."""
    weights = weights or (FOCAL_WEIGHTS if focal else WEIGHTS)
    logits, boxes = outputs[0], outputs[1]
    if num_boxes is None:
        num_boxes = max(1.0, float(sum(len(t["labels"]) for t in targets)))
    layers = [(logits, boxes, "", targets)]
    if len(outputs) >= 4:
        aux = zip(outputs[2], outputs[3], strict=True)
        layers += [(a, b, f"_{k}", targets) for k, (a, b) in enumerate(aux)]
    if len(outputs) == 6:  # class-agnostic: every object is class 0 (official bin_targets)
        agnostic = [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets]
        layers.append((outputs[4], outputs[5], "_enc", agnostic))
    terms: dict[str, torch.Tensor] = {}
    total = logits.new_zeros((), dtype=torch.float32)
    cost = (
        {
            "class_cost": weights["loss_ce"],
            "bbox_cost": weights["loss_bbox"],
            "giou_cost": weights["loss_giou"],
        }
        if focal
        else {}
    )
    for layer_logits, layer_boxes, suffix, layer_targets in layers:
        matches = hungarian_match(layer_logits, layer_boxes, layer_targets, focal=focal, **cost)
        found = set_loss_terms(
            layer_logits,
            layer_boxes,
            layer_targets,
            matches,
            num_boxes,
            eos_coef,
            class_weight,
            focal=focal,
        )
        terms.update({key + suffix: value for key, value in found.items()})
        total = total + sum(weight * found[key] for key, weight in weights.items())
    return total, terms


# -- the objective ---------------------------------------------------------------------------


def _normalisers_per_rank(
    targets: list[Target], queries: int, eos_coef: float, device: torch.device
) -> tuple[float, float]:
    """The set loss's two normalisers over every process, per process: the boxes (at
    least 1; the official ``num_boxes``) and the queries' total class weight (1 for a
    matched query, ``eos_coef`` for the others). DDP averages the ranks' gradients, so
    with both all-reduced a step over N processes is the one-process step of the global
    batch. The official code all-reduces only the boxes: its cross-entropy is each
    rank's own weighted mean, which differs from the global one when the ranks hold
    different numbers of boxes; in one process the two are the same."""
    matched = sum(min(len(t["labels"]), queries) for t in targets)
    weight = len(targets) * queries * eos_coef + (1.0 - eos_coef) * matched
    count = torch.tensor([float(sum(len(t["labels"]) for t in targets)), weight], device=device)
    world = 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(count)
        world = torch.distributed.get_world_size()
    boxes, weights = (v / world for v in count.tolist())
    return max(1.0, boxes), weights


@objective("detection")
class Detection(Objective):
    """DETR's set loss on (images, pixel masks, targets) batches; held-out COCO mAP."""

    def __init__(self, graph: Validated, model: nn.Module, *rest: Any) -> None:
        super().__init__(graph, model, *rest)
        _linear_sum_assignment()  # a missing scipy is said before the first step
        heads = [graph.type_of(node.id) for node in graph.nodes]
        #: per-class sigmoid scores (Deformable DETR): the focal criterion
        self.focal = any(isinstance(t, Detections) and t.sigmoid for t in heads)

    def lr_scales(self) -> dict[str, float]:
        """The backbone (every node a feature pyramid gathers from) at ``backbone_lr``,
        and what the blocks declare (Deformable DETR's sampling offsets and reference
        points at 0.1, as the official recipe)."""
        import networkx as nx

        edges = self.graph.inferred.graph
        backbone: set[str] = set()
        for node in self.graph.nodes:
            if isinstance(self.graph.type_of(node.id), Pyramid):
                backbone |= nx.ancestors(edges, node.id)
        ids = {node.id for node in self.graph.nodes}
        return {**super().lr_scales(), **{n: self.config.backbone_lr for n in backbone & ids}}

    def step(
        self,
        model: nn.Module,
        batch: tuple[torch.Tensor, torch.Tensor, list[Target]],
        generator: Any,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        images, masks, targets = batch
        outputs = model(images, masks)
        num_boxes, class_weight = _normalisers_per_rank(
            targets, outputs[0].shape[1], EOS_COEF, images.device
        )
        loss, terms = set_criterion(
            outputs,
            targets,
            num_boxes=num_boxes,
            class_weight=None if self.focal else class_weight,
            focal=self.focal,
        )
        n = len(images)
        logged = ("loss_ce", "loss_bbox", "loss_giou", "cardinality_error")  # the last layer's
        return loss, {key: terms[key].item() * n for key in logged}

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, split: Any, device: str, autocast: Any
    ) -> dict[str, float]:
        from vitgraph.train.coco_eval import coco_map

        model.eval()
        predictions = []
        for begin in range(0, len(split), 8):
            idx = torch.arange(begin, min(begin + 8, len(split)))
            images, masks, _ = split.batch(idx, device)
            with autocast():
                logits, boxes = model(images, masks)
            predictions += list(zip(logits.float().cpu(), boxes.float().cpu(), strict=True))
        return coco_map(split, predictions, sigmoid=self.focal)
