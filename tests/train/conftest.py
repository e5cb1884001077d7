"""Training tests run tiny models: one intra-op thread (a second only adds contention on
a shared 2-core box), given back after each test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
