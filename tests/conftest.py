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


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    """The stand-in Hub on 127.0.0.1 (tests/hub_server.py), with huggingface_hub pointed at it."""
    from hub_server import FakeHub
    from huggingface_hub import constants

    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        # huggingface_hub reads HF_ENDPOINT once at import time, into these two constants
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("HF_TOKEN", "")
        yield server


@pytest.fixture(scope="module")
def ghn_dir(tmp_path_factory) -> str:
    """A small untrained GHN-QAT checkpoint (bits 2/3/4/8) saved once per test module."""
    from torch_qinit.ghn import GHN, GHNConfig
    from torch_qinit.hub import save_pretrained

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("ghn")
    save_pretrained(GHN(GHNConfig(hidden=32, layers=1, heads=4, decoder_rank=8, bits=(2, 3, 4, 8))), d)
    return str(d)
