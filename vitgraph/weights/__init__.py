"""Weights in and out: one safetensors format (``format``), one loader (``loader``), one
report and one error family (``report``)."""

from vitgraph.weights.format import WEIGHTS_FORMAT, read_header, save_weights
from vitgraph.weights.loader import KeyMap, carry_weights, load_state, load_weights
from vitgraph.weights.report import CheckpointError, LoadReport, WeightsError

__all__ = [
    "WEIGHTS_FORMAT",
    "CheckpointError",
    "KeyMap",
    "LoadReport",
    "WeightsError",
    "carry_weights",
    "load_state",
    "load_weights",
    "read_header",
    "save_weights",
]
