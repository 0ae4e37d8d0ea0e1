"""Flow tests train tiny models: run them on one intra-op thread.

Tiny matmuls gain nothing from a second OpenMP thread, and on a shared 2-core machine the thread
hand-offs made the training tests 5-20x slower (30-110 s instead of ~6 s).
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
