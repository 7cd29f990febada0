"""Shared test setup."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # The tests run small ops on a shared 2-core machine: extra intra-op threads only
    # spin and contend (measured up to 30x slower here), so the suite runs single-threaded.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
