"""`torch-qinit` console dispatch, `info`, and `demo` in a tiny mode."""
import csv
import importlib.util

import pytest
import torch

from torch_qinit.cli.main import main
from torch_qinit.data import DEFAULT_DATA_DIR
from torch_qinit.ghn import GHN, GHNConfig
from torch_qinit.hub import WEIGHTS_DIR_ENV, save_pretrained

HAVE_DATA = (DEFAULT_DATA_DIR / "train-images-idx3-ubyte.gz").is_file() and \
    (DEFAULT_DATA_DIR / "t10k-images-idx3-ubyte.gz").is_file()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason=f"Fashion-MNIST not installed in {DEFAULT_DATA_DIR}")


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """Stand-in bundled checkpoints: small random GHNs in the ghn-qat/ and ghn/ layout."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("weights")
    qat = GHN(GHNConfig(hidden=32, layers=1, heads=4, decoder_rank=8, bits=(2, 3, 4, 8)))
    qat.config.training = {"steps": 123, "stage": "qat", "command": "torch-qinit train --stage qat --steps 123"}
    save_pretrained(qat, d / "ghn-qat")
    save_pretrained(GHN(GHNConfig(hidden=32, layers=1, heads=4, decoder_rank=8, bits=(), method="ghn")), d / "ghn")
    return d


def test_help_and_no_args(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: torch-qinit" in out and "demo" in out and "info" in out
    assert main([]) == 0


def test_unknown_command(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_info_with_checkpoints(weights_dir, monkeypatch, capsys):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(weights_dir))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    import torch_qinit

    assert f"torch_qinit      {torch_qinit.__version__}" in out and "huggingface_hub" in out
    assert str(weights_dir / "ghn-qat") in out and "sha256" in out
    assert "123 steps" in out and "torch-qinit train --stage qat --steps 123" in out
    assert "ghn-qat, ghn, " in out and "he_normal" in out
    assert "dataset: Fashion-MNIST at" in out


def test_info_missing_checkpoints_and_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "nothing"))
    assert main(["info", "--data-dir", str(tmp_path / "nodata")]) == 0
    out = capsys.readouterr().out
    assert out.count("MISSING: no model.safetensors") == 2
    assert "apt-get install dataset-fashion-mnist" in out


def _read_results(out_dir, stem="demo"):
    with (out_dir / f"{stem}.csv").open() as f:
        return list(csv.DictReader(f))


@needs_data
def test_demo_tiny(weights_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, "/nonexistent")  # --weights-dir must override it (restored after)
    out_dir = tmp_path / "out"
    rc = main(["demo", "--archs", "1", "--qat-steps", "2", "--test-subset", "256", "--curve-subset", "128",
               "--batch-size", "64", "--calib-batches", "2", "--no-progress",
               "--weights-dir", str(weights_dir), "--out", str(out_dir)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "zero-shot" in out and "after 2-step QAT" in out and "MISSING" not in out
    for m in ("ghn-qat", "ghn", "he_normal", "glorot_uniform"):
        assert m in out
    rows = _read_results(out_dir)
    assert [r["method"] for r in rows] == ["ghn-qat", "ghn", "he_normal", "glorot_uniform"]
    for r in rows:
        assert 0.0 <= float(r["zero_shot_w4a4"]) <= 1.0 and 0.0 <= float(r["qat2_w4a4"]) <= 1.0
    assert "| ghn-qat |" in (out_dir / "demo.md").read_text()
    assert (out_dir / "demo_curves.csv").is_file()
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out_dir / "demo.png").stat().st_size > 1000


@needs_data
def test_demo_without_ghn_weights_runs_classic_methods(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "empty"))
    out_dir = tmp_path / "out"
    rc = main(["demo", "--archs", "1", "--qat-steps", "1", "--test-subset", "128", "--batch-size", "64",
               "--calib-batches", "2", "--no-progress", "--no-plot", "--out", str(out_dir)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ghn-qat: MISSING" in out and "ghn: MISSING" in out and "checkpoint missing" in out
    assert [r["method"] for r in _read_results(out_dir)] == ["he_normal", "glorot_uniform"]
    assert not (out_dir / "demo.png").exists()


def test_demo_bad_arguments(capsys):
    assert main(["demo", "--methods", "he_normal,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["demo", "--archs", "0"]) == 2
    assert main(["demo", "--bits", "1"]) == 2
    assert main(["demo", "--device", "gpu0"]) == 2  # refused before any data loads
    assert "--device: device 'gpu0' is not a device name" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["demo", "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    from tiny_cifar import use_tiny_cifar

    return use_tiny_cifar(tmp_path, monkeypatch)


def test_train_cifar10(tiny_cifar, tmp_path):
    import json

    out = tmp_path / "run"
    rc = main(["train", "--dataset", "cifar10", "--data-dir", str(tiny_cifar), "--steps", "2", "--meta-batch", "1",
               "--batch-size", "4", "--arch-pool", "3", "--hidden", "32", "--layers", "1", "--heads", "4",
               "--warmup", "1", "--ckpt-every", "2", "--out", str(out)])
    assert rc == 0
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["input_shape"] == [3, 32, 32]
    data = json.dumps(config)
    assert "CIFAR-10 train (50k)" in data and "cifar-10-batches-bin (binary)" in data
    assert "--dataset cifar10" in data  # the recorded command


def test_train_missing_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_QINIT_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "cifar-10-batches-py" in err and "--data-dir" in err


@pytest.fixture
def cifar_weights(tmp_path):
    """Stand-in CIFAR-10 checkpoints (3x32x32) under the bundled CIFAR-10 names, and nothing else."""
    torch.manual_seed(0)
    d = tmp_path / "cifar_weights"
    for name, bits, method in (("ghn-qat-cifar10", (2, 3, 4, 8), "ghn-qat"), ("ghn-cifar10", (), "ghn")):
        save_pretrained(GHN(GHNConfig(hidden=32, layers=1, heads=4, decoder_rank=8, bits=bits, method=method,
                                      input_shape=(3, 32, 32))), d / name)
    return d


def test_demo_cifar10(tiny_cifar, cifar_weights, tmp_path, monkeypatch, capsys):
    from torch_qinit.space import get_arch

    monkeypatch.setenv(WEIGHTS_DIR_ENV, "/nonexistent")  # restored after; --weights-dir sets it
    out_dir = tmp_path / "out"
    rc = main(["demo", "--dataset", "cifar10", "--data-dir", str(tiny_cifar), "--archs", "1", "--qat-steps", "2",
               "--batch-size", "8", "--calib-batches", "2", "--no-progress", "--no-plot",
               "--weights-dir", str(cifar_weights), "--out", str(out_dir)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "W4A4 on CIFAR-10 (40 train / 20 test" in out and "MISSING" not in out
    assert "ghn-qat-cifar10" in out and "trained on 3x32x32 input" in out
    rows = _read_results(out_dir, "demo_cifar10")  # beside the Fashion-MNIST demo's files, not over them
    assert [r["method"] for r in rows] == ["ghn-qat", "ghn", "he_normal", "glorot_uniform"]
    for r in rows:
        assert 0.0 <= float(r["zero_shot_w4a4"]) <= 1.0 and 0.0 <= float(r["qat2_w4a4"]) <= 1.0
    # the architecture was built for 3-channel input
    n_params = sum(p.numel() for p in get_arch("test", 0, 3).build().parameters())
    assert f"| 0 | {n_params} |" in (out_dir / "demo_cifar10.md").read_text()
    assert "# torch-qinit demo: W4A4 on CIFAR-10" in (out_dir / "demo_cifar10.md").read_text()


def test_demo_cifar10_does_not_substitute_fashion_checkpoints(tiny_cifar, weights_dir, tmp_path, monkeypatch,
                                                              capsys):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(weights_dir))  # holds ghn-qat/ and ghn/ (Fashion-MNIST) only
    rc = main(["demo", "--dataset", "cifar10", "--data-dir", str(tiny_cifar), "--archs", "1", "--qat-steps", "0",
               "--batch-size", "8", "--calib-batches", "1", "--no-progress", "--no-plot",
               "--methods", "ghn-qat,he_normal", "--out", str(tmp_path / "out")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ghn-qat: MISSING" in out and "ghn-qat-cifar10" in out
    assert [r["method"] for r in _read_results(tmp_path / "out", "demo_cifar10")] == ["he_normal"]
