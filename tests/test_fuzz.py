"""Fuzzing the loader and validator: only a located SpecError may escape, each case fast.

``make test`` runs a few hundred cases; ``make fuzz`` runs 10,000 (``VITGRAPH_FUZZ_CASES``)
through ``tests/fuzz_report.py``, which prints a summary.
"""

from __future__ import annotations

import os
import time

import pytest

import vitgraph
from tests.fuzz_specs import mutated_spec
from vitgraph import SpecError

CASES = int(os.environ.get("VITGRAPH_FUZZ_CASES", "300"))


def run_case(seed: int) -> tuple[str, float]:
    """'ok' or the first problem's message; raises anything that is not a SpecError."""
    name, text = mutated_spec(seed)
    start = time.perf_counter()
    try:
        vitgraph.load(f"fuzz/{name}_{seed}.yaml", text=text).summary()
        outcome = "ok"
    except SpecError as exc:
        for problem in exc.problems:
            assert problem.location.file, f"seed {seed}: unlocated problem {problem}"
        outcome = exc.problems[0].message
    return outcome, time.perf_counter() - start


@pytest.mark.parametrize("block", range(10))
def test_mutated_shipped_specs_only_raise_located_spec_errors_quickly(block):
    per_block = max(1, CASES // 10)
    for seed in range(block * per_block, (block + 1) * per_block):
        _, seconds = run_case(seed)
        assert seconds < 2.0 * (4 if os.environ.get("CI") is None else 1), f"seed {seed} slow"
