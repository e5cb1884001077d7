"""``vitgraph build`` never holds two copies of the weights (issue #9), measured with the
benchmarks' dispatch-level counter (``benchmarks.harness.PeakMemory``)."""

from __future__ import annotations

import torch

import vitgraph
from benchmarks.harness import PeakMemory

#: twelve layers at 32 px: 5.5M parameters, where torch's trunc_normal_ masks of the
#: largest weight (the one transient of a build) are 2% of the total
SPEC, OVERRIDES = "deit_ti", {"input.size": 32}


def state_bytes(model: torch.nn.Module) -> int:
    return sum(t.untyped_storage().nbytes() for t in model.state_dict().values())


def test_the_counter_sees_allocations_and_frees():
    counter = PeakMemory()
    with counter:
        a = torch.ones(1000, 250)  # 1,000,000 bytes
        b = a @ a.T  # 4,000,000 bytes
        c = b.view(-1)  # a view: no new storage
        del a, b
        assert counter.current == 4_000_000
    assert counter.peak == 5_000_000 and c.numel() == 1_000_000


def test_build_peaks_within_ten_percent_of_the_final_weights():
    graph = vitgraph.load(SPEC, overrides=OVERRIDES)
    counter = PeakMemory()
    with counter:
        model = graph.build()
    final = state_bytes(model)
    assert graph.summary().params == sum(p.numel() for p in model.parameters())
    assert counter.current == final  # nothing else survives the build
    assert counter.peak <= 1.1 * final, f"peak {counter.peak:,} vs final {final:,} bytes"


def test_build_with_weights_copies_tensor_by_tensor(tmp_path):
    graph = vitgraph.load(SPEC, overrides=OVERRIDES)
    path = tmp_path / "w.safetensors"
    vitgraph.save_weights(graph.build(), graph, path)
    counter = PeakMemory()
    with counter:
        model = graph.build(weights=path)
    final = state_bytes(model)
    largest = max(t.untyped_storage().nbytes() for t in model.state_dict().values())
    # the model, plus one tensor read from the file at a time (and the init's transients)
    assert counter.peak <= 1.1 * final + largest, (counter.peak, final, largest)
