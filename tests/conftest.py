import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def _warm_registry():
    """Import every block module once, so per-test wall-time bounds measure the work itself
    (DESIGN.md: time validate in-process after the imports)."""
    import vitgraph
    from vitgraph.spec.catalog import registry

    registry()
    vitgraph.load("vit_ti_16").summary()
