"""Weights in and out: safetensors only (no pickle), with the spec in the metadata."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file
from torch import nn


def save_weights(model: nn.Module, graph, path: str | Path) -> None:
    """Write ``model``'s state_dict with the spec text, variant and overrides as metadata."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {
        "vitgraph_format": "1",
        "spec_name": graph.name,
        "spec_file": str(graph.file),
        "variant": graph.variant or "",
        "overrides": json.dumps(graph.overrides),
        "spec": Path(graph.file).read_text(encoding="utf-8") if Path(graph.file).is_file()
        else "",
    }
    save_file(state, str(path), metadata=metadata)
