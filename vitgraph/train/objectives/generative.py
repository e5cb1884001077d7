"""Generative pre-training on id sequences (iGPT, Chen et al. ICML 2020 §2): the
autoregressive next-token objective and BERT's masked-token objective, each reported as
bits per token (the model's negative log-likelihood in base 2, per id: per palette colour
for iGPT, not comparable with PixelCNN's bits per dimension; per sub-pixel for the Image
Transformer, whose ids are sub-pixels: there it is bits per dimension)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitgraph.ir import Validated
from vitgraph.train.objectives import objective
from vitgraph.train.objectives.base import Objective

#: BERT's share of masked positions (iGPT §2.2, as BERT)
MASK_SHARE = 0.15


def _needs_logits_per_position(graph: Validated, name: str) -> None:
    out = graph.output_shape
    vocab = getattr(graph.input_type, "vocab", None)
    if vocab is None or len(out) != 2 or out[0] != graph.input_shape[0] or out[1] < vocab:
        raise ValueError(
            f"the {name} objective trains a model called with ids (B, N) that returns "
            f"per-position logits (B, N, vocab); {graph.name} takes "
            f"{graph.input_type} and returns {out}"
        )


def _at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits in float32; float64 kept (a model run in double scores
    exact bits: a uniform predictor over 256 intensities, 8.0 per sub-pixel)."""
    return logits if logits.dtype == torch.float64 else logits.float()


@objective("next_token")
class NextToken(Objective):
    """Position i predicts id i from the ids before it (the model shifts its input)."""

    classifies = False

    def __init__(self, graph: Validated, model: nn.Module, *rest: Any) -> None:
        super().__init__(graph, model, *rest)
        _needs_logits_per_position(graph, self.name)

    def nats(self, model: nn.Module, ids: torch.Tensor, generator: Any = None) -> torch.Tensor:
        """Mean negative log-likelihood per id, in nats."""
        logits = model(ids)
        return F.cross_entropy(_at_least_float32(logits).flatten(0, 1), ids.flatten())

    def step(
        self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], generator: Any
    ) -> tuple[torch.Tensor, dict[str, float]]:
        ids, _ = batch
        loss = self.nats(model, ids, generator)
        return loss, {"bits_per_token": loss.item() / math.log(2) * len(ids)}

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, split: Any, device: str, autocast: Any
    ) -> dict[str, float]:
        """Held-out bits per token (eval mode; BERT: a fixed mask, seeded)."""
        model.eval()
        total = 0.0
        generator = torch.Generator().manual_seed(0)
        for begin in range(0, len(split), 256):
            idx = torch.arange(begin, min(begin + 256, len(split)))
            ids, _ = split.batch(idx, device)
            with autocast():
                total += self.nats(model, ids, generator).item() * len(idx)
        return {"val_bits_per_token": total / len(split) / math.log(2)}


@objective("bert")
class MaskedTokens(NextToken):
    """BERT's objective as iGPT trains it (§2.2): 15% of positions masked by zeroing their
    input embeddings (no mask id), the loss on the masked positions only. The model must
    see every position (``bert: true`` in specs/igpt.yaml: no shift, no causal mask)."""

    def __init__(self, graph: Validated, model: nn.Module, *rest: Any) -> None:
        super().__init__(graph, model, *rest)
        # the input embedding: the first tokenizer of the graph (iGPT's wte)
        first = next(n for n in graph.nodes if type(n.params).role == "tokenizer")
        self.embed = dict(model.named_modules())[first.id]
        self.mask: torch.Tensor | None = None
        self.hook = self.embed.register_forward_hook(self._zero_masked)

    def _zero_masked(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return output
        return output.masked_fill(self.mask[..., None], 0.0)

    def nats(self, model: nn.Module, ids: torch.Tensor, generator: Any = None) -> torch.Tensor:
        draw = torch.rand(ids.shape, generator=generator).to(ids.device)
        self.mask = draw < MASK_SHARE
        self.mask[:, 0] |= ~self.mask.any(1)  # at least one masked position per sequence
        try:
            logits = model(ids)
        finally:
            mask, self.mask = self.mask, None
        return F.cross_entropy(_at_least_float32(logits[mask]), ids[mask])

    def close(self) -> None:
        self.hook.remove()
