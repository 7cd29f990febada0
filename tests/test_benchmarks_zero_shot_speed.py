"""Quick modes of benchmarks/zero_shot.py and benchmarks/speed_coverage.py write sane CSV/MD/PNG files."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

import benchmarks
from benchmarks import common, results, speed_coverage, zero_shot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _have_data() -> bool:
    from torch_qinit.data import DatasetNotFoundError, load_fashion_mnist

    try:
        load_fashion_mnist("test")
    except (DatasetNotFoundError, ValueError):
        return False
    return True


needs_data = pytest.mark.skipif(not _have_data(), reason="Fashion-MNIST is not installed")


def _clear_ghn_caches() -> None:
    from torch_qinit import initialize

    initialize._ghn_cache.clear()
    common._ghn_check.cache_clear()


@pytest.fixture
def stand_in_weights(tmp_path, monkeypatch):
    """Tiny untrained 'ghn-qat' and 'ghn' checkpoints in $TORCH_QINIT_WEIGHTS_DIR (GHN caches reset around)."""
    from torch_qinit.ghn import GHN, GHNConfig
    from torch_qinit.hub import WEIGHTS_DIR_ENV, save_pretrained

    torch.manual_seed(0)
    # Under the Fashion-MNIST names and, at 3x32x32, the CIFAR-10 ones (for a per-input checkpoint choice).
    for suffix, shape in (("", (1, 28, 28)), ("-cifar10", (3, 32, 32))):
        for name, bits in (("ghn-qat", (2, 3, 4, 8)), ("ghn", ())):
            cfg = GHNConfig(hidden=32, layers=1, heads=4, decoder_rank=8, bits=bits, input_shape=shape,
                            method="ghn-qat" if bits else "ghn")
            save_pretrained(GHN(cfg), tmp_path / "w" / (name + suffix))
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "w"))
    _clear_ghn_caches()
    yield
    monkeypatch.delenv(WEIGHTS_DIR_ENV)
    _clear_ghn_caches()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _check_png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


def _check_zero_shot(out: Path, expect_ghn: bool, name: str = "zero_shot") -> None:
    rows = _rows(out / f"{name}.quick.csv")
    assert rows
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0
        assert r["bits"] in {"float", "4"}
        if r["bits"] == "4":
            assert float(r["qmse"]) > 0 and math.isfinite(float(r["sqnr_db"]))
    methods = {r["method"] for r in rows}
    assert {"he_normal", "glorot_uniform"} <= methods
    md = (out / f"{name}.quick.md").read_text()
    assert "Accuracy (%)" in md and "SQNR" in md and "deterministic" in md and "test subset" in md
    assert all(int(r["ghn_params"]) > 0 for r in rows if r["method"].startswith("ghn"))
    if expect_ghn:
        assert "ghn-qat" in methods
    else:
        assert "ghn-qat" not in methods and "ghn-qat skipped" in md
    summary = _rows(out / f"{name}_summary.quick.csv")
    assert all(0.0 <= float(s["acc_mean"]) <= 1.0 and float(s["acc_std"]) >= 0 for s in summary)
    _check_png(out / f"{name}.quick.png")


@needs_data
def test_zero_shot_quick_with_installed_weights(tmp_path):
    """Whatever weights are installed: GHN methods run if they load, else they are skipped with a note."""
    _clear_ghn_caches()
    assert zero_shot.main(["--quick", "--out", str(tmp_path)]) == 0
    _check_zero_shot(tmp_path, expect_ghn=common.ghn_available("ghn-qat"))
    assert results.RESULTS_DIR == common.DEFAULT_RESULTS_DIR  # --out is restored


@needs_data
def test_zero_shot_quick_with_stand_in_ghn(tmp_path, stand_in_weights):
    out = tmp_path / "out"
    assert benchmarks.main(["zero_shot", "--quick", "--out", str(out)]) == 0  # through the dispatcher
    _check_zero_shot(out, expect_ghn=True)
    rows = _rows(out / "zero_shot.quick.csv")
    assert "ghn" in {r["method"] for r in rows}
    assert {r["seed"] for r in rows} == {"0"}
    # 2 archs x 4 methods x 2 widths
    assert len(rows) == 16


@needs_data
def test_zero_shot_quick_without_ghn_weights(tmp_path, monkeypatch):
    from torch_qinit.hub import WEIGHTS_DIR_ENV

    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "empty"))
    _clear_ghn_caches()
    try:
        assert zero_shot.main(["--quick", "--out", str(tmp_path), "--threads", "1"]) == 0
    finally:
        monkeypatch.delenv(WEIGHTS_DIR_ENV)
        _clear_ghn_caches()
    _check_zero_shot(tmp_path, expect_ghn=False)


def test_zero_shot_quick_cifar10(tmp_path, stand_in_weights, monkeypatch):
    from tiny_cifar import use_tiny_cifar

    from torch_qinit.space import build_arch

    data = use_tiny_cifar(tmp_path, monkeypatch, n_train=80, n_test=40)
    out = tmp_path / "out"
    assert zero_shot.main(["--quick", "--dataset", "cifar10", "--data-dir", str(data), "--out", str(out)]) == 0
    _check_zero_shot(out, expect_ghn=True, name="zero_shot_cifar10")
    assert not (out / "zero_shot.quick.csv").exists()  # Fashion-MNIST results are left alone
    rows = _rows(out / "zero_shot_cifar10.quick.csv")
    # the held-out archs were built for 3x32x32 input
    for r in rows:
        assert int(r["params"]) == sum(p.numel() for p in build_arch(r["split"], int(r["arch"]), 3).parameters())
    grayscale_twin = build_arch(rows[0]["split"], int(rows[0]["arch"]))
    assert int(rows[0]["params"]) != sum(p.numel() for p in grayscale_twin.parameters())
    md = (out / "zero_shot_cifar10.quick.md").read_text()
    assert "CIFAR-10 test images" in md and "# Zero-shot quantized accuracy of each initializer, CIFAR-10" in md


def test_common_result_names_and_data():
    assert common.result_name("zero_shot", "fmnist") == "zero_shot"
    assert common.result_name("zero_shot", "cifar10") == "zero_shot_cifar10"
    assert (common.in_channels("cifar10"), common.in_channels("fmnist")) == (3, 1)
    parser = common.common_args(__import__("argparse").ArgumentParser())
    assert parser.parse_args([]).dataset == "fmnist"
    assert parser.parse_args(["--dataset", "cifar10"]).dataset == "cifar10"
    with pytest.raises(SystemExit):
        parser.parse_args(["--dataset", "mnist"])
    assert parser.parse_args([]).device == torch.device("cpu")
    with pytest.raises(SystemExit):  # a malformed device is a usage error at parse time, not a failed run later
        parser.parse_args(["--device", "gpu0"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            parser.parse_args(["--device", "cuda"])



def _check_speed(out: Path, expect_ghn: bool) -> None:
    rows = _rows(out / "speed_coverage.quick.csv")
    lat = [r for r in rows if r["part"] == "a_latency"]
    nodes = [r for r in rows if r["part"] == "c_nodes"]
    assert lat and nodes
    assert all(float(r["init_ms"]) > 0 and int(r["params"]) > 0 for r in lat)
    assert ("ghn-qat" in {r["method"] for r in lat}) == expect_ghn
    for r in lat:
        if r["method"] == "ghn-qat":
            assert 0 < float(r["capture_share"]) <= 1.5 and float(r["ghn_forward_ms"]) > 0
    assert all(float(r["ghn_forward_ms"]) > 0 for r in nodes)
    assert {int(r["nodes"]) for r in nodes} == set(speed_coverage.NODES_QUICK)  # chains hit the node counts
    md = (out / "speed_coverage.quick.md").read_text()
    assert "(a)" in md and "(b) torchvision" in md and "50-node graph" in md
    _check_png(out / "speed_coverage_latency.quick.png")
    _check_png(out / "speed_coverage_nodes.quick.png")


def test_speed_coverage_quick(tmp_path):
    _clear_ghn_caches()
    assert speed_coverage.main(["--quick", "--out", str(tmp_path)]) == 0
    _check_speed(tmp_path, expect_ghn=common.ghn_available("ghn-qat"))


def test_speed_coverage_quick_with_stand_in_ghn(tmp_path, stand_in_weights):
    assert speed_coverage.main(["--quick", "--out", str(tmp_path)]) == 0
    _check_speed(tmp_path, expect_ghn=True)


def test_torchvision_rows_with_a_fake_torchvision():
    """Part (b) without torchvision: a stand-in module with list_models/get_model."""
    import types

    from torch import nn

    def get_model(name, weights=None):
        assert weights is None
        if name == "broken":
            raise RuntimeError("cannot build")
        return speed_coverage.CNN(4, depth=1, in_channels=3, num_classes=1000) if name == "cnn" else nn.Identity()

    tv = types.SimpleNamespace(models=types.SimpleNamespace(list_models=lambda module=None: ["cnn", "broken", "id"],
                                                            get_model=get_model))
    rows = speed_coverage.torchvision_rows(tv, None, 10**9, log=lambda s: None)
    by = {r["model"]: r for r in rows}
    assert by["broken"]["status"] == "build failed"
    if common.ghn_available("ghn-qat"):
        assert by["cnn"]["status"] == "ok" and by["cnn"]["capture_method"] == "fx" and by["cnn"]["init_ms"] > 0
    assert by["id"]["status"] == "error"  # no parameters: initialize_ raises, which is counted


def test_common_helpers():
    assert common.mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert common.mean_std([5.0]) == (5.0, 0.0)
    assert all(math.isnan(v) for v in common.mean_std([]))
    assert common.ghn_available("he_normal")
    m1, r1 = common.init_model(("test", 0), "he_normal", seed=3)
    m2, _ = common.init_model(("test", 0), "he_normal", seed=3)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert r1.method == "he_normal"


@needs_data
def test_zero_shot_quick_classic_split(tmp_path, stand_in_weights):
    out = tmp_path / "out"
    assert benchmarks.main(["zero_shot", "--quick", "--out", str(out), "--splits", "classic",
                            "--methods", "he_normal", "ghn"]) == 0
    rows = _rows(out / "zero_shot.quick.csv")
    assert {r["split"] for r in rows} == {"classic"} and {r["arch"] for r in rows} == {"0"}
    assert {r["method"] for r in rows} == {"he_normal", "ghn"}
