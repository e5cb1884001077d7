"""The linear probe (iGPT §3.3, §4.2): how linearly separable a model's features are.

Features of one node (by default the middle layer, where iGPT finds the best ones) are
average-pooled over the positions and a linear classifier is fitted on the training split
(a full-batch multinomial logistic regression, L-BFGS on standardised features, the model
frozen); its held-out accuracy is the probe's score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from vitgraph.compiler import META_ID
from vitgraph.train.data import Dataset


@dataclass
class ProbeResult:
    layer: str
    train_accuracy: float
    val_accuracy: float


def middle_layer(graph: Any) -> str:
    """The id of the middle unit of the graph's longest repeat (``h.12`` of 24 layers)."""
    groups = [(count, gid) for gid, (_, count) in graph.groups.items() if count > 1]
    if not groups:
        raise ValueError(f"{graph.name} has no repeated layers: name the probe's layer")
    count, gid = max(groups)
    return f"{gid}.{count // 2}"


def up_to(model: fx.GraphModule, node_id: str) -> fx.GraphModule:
    """The part of a compiled model that computes ``node_id`` (its output is the node's)."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    last = None
    for node in model.graph.nodes:
        if node.op == "output":
            break
        env[node] = graph.node_copy(node, lambda arg: env[arg])
        if node.meta.get(META_ID) == node_id:
            last = env[node]
    if last is None:
        raise ValueError(f"no node '{node_id}' in the compiled model")
    graph.output(last)
    part = fx.GraphModule(model, graph)
    part.graph.eliminate_dead_code()
    part.recompile()
    return part


@torch.no_grad()
def pooled_features(
    model: Any, graph: Any, layer: str, inputs: torch.Tensor, batch: int = 256
) -> torch.Tensor:
    """The mean over positions of ``layer``'s output tokens, for every input ``(N, D)``."""
    try:
        node = graph.resolve(layer)
        graph.type_of(layer)
    except KeyError:
        known = ", ".join(sorted(graph.groups))
        raise ValueError(f"no layer '{layer}' in {graph.name} (repeats: {known})") from None
    part = up_to(model, node)
    was_training = model.training
    model.eval()
    try:
        seen = [part(inputs[b : b + batch]).mean(1) for b in range(0, len(inputs), batch)]
    finally:
        model.train(was_training)
    return torch.cat(seen).float()


def linear_probe(
    model: nn.Module,
    data: Dataset,
    layer: str | None = None,
    *,
    steps: int = 200,
    weight_decay: float = 1e-3,
) -> ProbeResult:
    """Fit a linear classifier on ``layer``'s pooled features of ``data.train`` and score
    it on ``data.val`` (accuracy)."""
    graph = model.vitgraph_graph
    layer = layer or middle_layer(graph)
    device = next(model.parameters()).device
    train = pooled_features(model, graph, layer, data.train.images.to(device))
    val = pooled_features(model, graph, layer, data.val.images.to(device))
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    train, val = (train - mean) / std, (val - mean) / std
    labels = data.train.labels.to(device)
    classes = len(data.classes)
    head = nn.Linear(train.shape[1], classes).to(device)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(train), labels) + weight_decay * head.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        fit = (head(train).argmax(-1) == labels).float().mean().item()
        score = (head(val).argmax(-1) == data.val.labels.to(device)).float().mean().item()
    return ProbeResult(layer, fit, score)
