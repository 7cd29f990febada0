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


@pytest.fixture(autouse=True, scope="session")
def _source_tree_results_untouched():
    """Tests write their results to temporary folders, never into the source tree's benchmarks/results."""
    from pathlib import Path

    results = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
    before = {p: p.stat().st_mtime_ns for p in results.rglob("*")} if results.is_dir() else {}
    yield
    after = {p: p.stat().st_mtime_ns for p in results.rglob("*")} if results.is_dir() else {}
    changed = sorted(str(p) for p in after if before.get(p) != after[p])
    assert not changed, f"tests wrote into the source tree: {changed[:5]}"
