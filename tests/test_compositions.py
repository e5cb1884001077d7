"""Every composition that validates works through the whole model API (#24 item 1).

Hypothesis draws compositions of the shipped kinds (``tests/compositions.py``: tokenizer
× prefix tokens × position × layer × attention kind × pooling × head, and stage families
followed by token-level heads); each one that validates must run forward,
``forward_features``/``forward_head`` (giving forward's logits), grad checkpointing,
``reset_classifier`` and ``torch.export``; one that does not must raise located
SpecErrors. ``make test`` draws 50 (``VITGRAPH_COMPOSITIONS``); ``make fuzz`` 500, with
ONNX, through ``tests/fuzz_report.py``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings

from tests.compositions import as_yaml, compositions, exercise

CASES = int(os.environ.get("VITGRAPH_COMPOSITIONS", "50"))


@settings(
    max_examples=CASES,
    deadline=None,
    database=None,
    derandomize=True,  # the same cases on every run: a failure is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(compositions())
def test_every_generated_composition_serves_the_model_api_or_raises_located_errors(spec):
    outcome = exercise(as_yaml(spec))
    assert outcome == "ok" or outcome.startswith("spec error: ")
