"""Taps into a compiled spec: forward hooks on the nodes the objectives need.

The over-smoothing losses read the first-layer patch embedding and the last layer's
patch tokens; MixToken edits the patch embedding's output. The nodes are found from the
graph's inferred types, so any spec with patch tokens works: ``embed`` is the first
module producing grid tokens without prefix tokens, ``last`` the last module producing
tokens, ``classifier`` the modules from the pooled vector up to the first linear head.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vitgraph.shapes import Tokens, Vector


class Taps:
    def __init__(self, graph, model: nn.Module) -> None:
        self.graph = graph
        modules = dict(model.named_modules())
        embed: str | None = None
        last: str | None = None
        classifier: list[str] = []
        for node in graph.nodes:
            if node.id not in modules:
                continue
            out = graph.type_of(node.id)
            if isinstance(out, Tokens):
                last = node.id
                if embed is None and out.grid is not None and out.prefix == 0:
                    embed = node.id
            elif (
                isinstance(out, Vector)
                and last is not None
                and not classifier_done(classifier, graph)
                and all(isinstance(graph.type_of(i), Vector) for i in node.inputs)
            ):
                classifier.append(node.id)
        if embed is None or last is None:
            raise ValueError(
                f"spec {graph.name} has no patch-token grid to tap: MixToken and "
                "the over-smoothing losses need a patch embedding"
            )
        self.embed_id, self.last_id = embed, last
        self.grid: tuple[int, int] = graph.type_of(embed).grid
        self.prefix = graph.type_of(last).prefix
        self.classifier = [modules[i] for i in classifier]
        self.embedded: torch.Tensor | None = None
        self.final: torch.Tensor | None = None
        self.edit: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._handles = [
            modules[embed].register_forward_hook(self._on_embed),
            modules[last].register_forward_hook(self._on_last),
        ]

    @property
    def patch_side(self) -> int:
        """Pixels per grid cell (the effective patch of the embedding, conv stems too)."""
        height = self.graph.input_shape[1]
        return height // self.grid[0]

    def _on_embed(self, module, args, output):
        if self.edit is not None:
            output = self.edit(output)
        self.embedded = output
        return output

    def _on_last(self, module, args, output):
        self.final = output

    @property
    def last_patches(self) -> torch.Tensor:
        assert self.final is not None
        return self.final[:, self.prefix :]

    def classify_patches(self) -> torch.Tensor:
        """The class head applied to every last-layer patch token: ``(B, N, classes)``."""
        x = self.last_patches
        for module in self.classifier:
            x = module(x)
        return x

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def classifier_done(chain: list[str], graph) -> bool:
    return bool(chain) and type(graph.node(chain[-1]).params).classifier_rule() is not None
