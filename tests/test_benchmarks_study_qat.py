"""The init_study and qat_from_init benchmarks in --quick mode: outputs exist and hold sane values.

On Fashion-MNIST each benchmark runs in a subprocess through the CLI dispatcher (``torch-qinit bench
NAME --quick``) with stand-in GHN checkpoints in a temporary ``TORCH_QINIT_WEIGHTS_DIR``, so the tests
behave the same whether or not the real bundled weights are installed (and no cache leaks between tests).
On CIFAR-10 they run in-process on tiny generated batches. Results always go to a temporary --out.
"""
from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("matplotlib")


def _have_fmnist() -> bool:
    from torch_qinit.data import DatasetNotFoundError, load_fashion_mnist

    try:
        load_fashion_mnist("test")
    except DatasetNotFoundError:
        return False
    return True


needs_fmnist = pytest.mark.skipif(not _have_fmnist(), reason="Fashion-MNIST not installed")


@pytest.fixture(scope="module")
def standin_weights(tmp_path_factory) -> Path:
    """Tiny random GHN checkpoints named like the bundled ones (never committed anywhere)."""
    from torch_qinit.ghn import GHN, GHNConfig
    from torch_qinit.hub import save_pretrained

    root = tmp_path_factory.mktemp("weights")
    # Under the Fashion-MNIST names and, at 3x32x32, the CIFAR-10 ones (for a per-input checkpoint choice).
    for suffix, shape in (("", (1, 28, 28)), ("-cifar10", (3, 32, 32))):
        for name, bits in (("ghn-qat", (2, 3, 4, 8)), ("ghn", ())):
            save_pretrained(GHN(GHNConfig(hidden=32, layers=1, heads=4, decoder_rank=8, bits=bits,
                                          input_shape=shape)), root / (name + suffix))
    return root


def bench(name: str, weights_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TORCH_QINIT_WEIGHTS_DIR=str(weights_dir), MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "torch_qinit.cli.main", "bench", name, "--quick", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def read_csv(path: Path) -> list[dict[str, str]]:
    assert path.is_file(), path
    with path.open() as f:
        return list(csv.DictReader(f))


def check_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def frac(v: str) -> float:
    x = float(v)
    assert 0.0 <= x <= 1.0, v
    return x


@needs_fmnist
def test_init_study_quick(standin_weights, tmp_path):
    out = tmp_path
    bench("init_study", standin_weights, "--out", str(out))
    rows = read_csv(out / "init_study.quick.csv")
    assert {(r["block"], r["init"]) for r in rows} == {("conv_bn", "he_normal"), ("conv_bn", "ghn-qat")}
    for r in rows:
        assert r["status"] == "ok", r
        fl, a8, a4 = frac(r["float_acc"]), frac(r["w8a8_acc"]), frac(r["w4a4_acc"])
        assert math.isclose(float(r["drop_w4a4"]), fl - a4, abs_tol=1e-9)
        assert math.isclose(float(r["drop_w8a8"]), fl - a8, abs_tol=1e-9)
        assert 0 < float(r["qmse_w8"]) < float(r["qmse_w4"])  # fewer bits, larger weight error
        assert 0 < float(r["act_range_mean"]) <= float(r["act_range_max"])
        assert math.isfinite(float(r["train_loss"]))
    ghn_row = next(r for r in rows if r["init"] == "ghn-qat")
    assert float(ghn_row["ghn_share"]) > 0.5  # the stand-in GHN really initialized the net

    layers = read_csv(out / "init_study_act_ranges.quick.csv")
    # stem + 3 conv_bn blocks + classifier = 5 conv/linear layers per run
    assert len(layers) == 5 * len(rows)
    for r in layers:
        assert float(r["act_min"]) <= float(r["act_max"])
        assert math.isclose(float(r["act_range"]), float(r["act_max"]) - float(r["act_min"]), rel_tol=1e-9)

    summary = read_csv(out / "init_study_summary.quick.csv")
    assert len(summary) == 2 and all(r["seeds"] == "1" for r in summary)
    check_png(out / "init_study.quick.png")
    md = (out / "init_study.quick.md").read_text()
    for needle in ("# Initializer study", "| block | he_normal | ghn-qat |", "## Reading", "init_study.quick.png",
                   "- command: `torch-qinit bench init_study --quick --out"):
        assert needle in md, needle


@needs_fmnist
def test_qat_from_init_quick(standin_weights, tmp_path):
    out = tmp_path
    bench("qat_from_init", standin_weights, "--out", str(out))
    rows = read_csv(out / "qat_from_init.quick.csv")
    assert {(r["arch"], r["bits"], r["method"]) for r in rows} == {
        ("2", b, m) for b in ("4", "2") for m in ("ghn-qat", "he_normal")}
    for r in rows:
        assert r["status"] == "ok", r
        frac(r["acc_step0"]), frac(r["final_acc"])
        assert float(r["best_acc"]) >= max(float(r["acc_step0"]), float(r["final_acc"]))
    curves = read_csv(out / "qat_from_init_curves.quick.csv")
    assert len(curves) == 3 * len(rows)  # steps 0 (zero-shot), 2, 4
    assert sorted({int(r["step"]) for r in curves}) == [0, 2, 4]
    for r in curves:
        frac(r["acc"])
    step0 = {(r["bits"], r["method"]): r["acc"] for r in curves if r["step"] == "0"}
    assert all(step0[(r["bits"], r["method"])] == r["acc_step0"] for r in rows)

    summary = read_csv(out / "qat_from_init_summary.quick.csv")
    assert len(summary) == 4
    for s in summary:
        assert s["target_method"] == "he_normal"  # the only classic init in the quick run
        assert s["steps_to_target"] == "not reached" or int(s["steps_to_target"]) in (0, 2, 4)
        if s["method"] == "he_normal":  # the target's own method reaches it by its last step at the latest
            assert s["steps_to_target"] != "not reached"
    check_png(out / "qat_from_init.quick.png")
    md = (out / "qat_from_init.quick.md").read_text()
    for needle in ("# QAT from initialization", "steps to target", "## Reading", "qat_from_init.quick.png",
                   "W2A2", "- command: `torch-qinit bench qat_from_init --quick --out"):
        assert needle in md, needle


@needs_fmnist
def test_qat_from_init_logit_std_goes_to_ghn_starts_and_names_its_files(standin_weights, tmp_path):
    bench("qat_from_init", standin_weights, "--bits", "4", "--steps", "2", "--logit-std", "1",
          "--out", str(tmp_path))
    assert not (tmp_path / "qat_from_init.quick.csv").exists()  # the uncapped run's files are not overwritten
    rows = read_csv(tmp_path / "qat_from_init_logit1.quick.csv")
    assert {r["method"] for r in rows} == {"ghn-qat", "he_normal"} and all(r["status"] == "ok" for r in rows)
    md = (tmp_path / "qat_from_init_logit1.quick.md").read_text()
    assert "logit_std=1" in md and "--logit-std 1" in md


@needs_fmnist
def test_qat_from_init_logit_std_none_runs_the_uncapped_prediction(standin_weights, tmp_path):
    bench("qat_from_init", standin_weights, "--bits", "4", "--steps", "2", "--methods", "ghn-qat",
          "--logit-std", "none", "--out", str(tmp_path))
    rows = read_csv(tmp_path / "qat_from_init_logitnone.quick.csv")
    assert [r["status"] for r in rows] == ["ok"]
    md = (tmp_path / "qat_from_init_logitnone.quick.md").read_text()
    assert "logit_std=None" in md and "--logit-std none" in md


@needs_fmnist
def test_qat_from_init_merge_of_runs_split_by_seed_equals_the_joint_run(standin_weights, tmp_path):
    # A benchmark split across processes (one seed each) and merged reports what one process running
    # every seed reports: each run is seeded on its own, so where it ran does not matter.
    common = ("--bits", "4", "--steps", "2")
    bench("qat_from_init", standin_weights, *common, "--seeds", "0", "1", "--out", str(tmp_path / "joint"))
    for seed in ("0", "1"):
        bench("qat_from_init", standin_weights, *common, "--seeds", seed, "--out", str(tmp_path / seed))
    parts = [str(tmp_path / seed / "qat_from_init.quick.csv") for seed in ("0", "1")]
    bench("qat_from_init", standin_weights, *common, "--merge", *parts, "--out", str(tmp_path / "merged"))
    joint = read_csv(tmp_path / "joint" / "qat_from_init_summary.quick.csv")
    merged = read_csv(tmp_path / "merged" / "qat_from_init_summary.quick.csv")
    assert merged == joint and {s["runs"] for s in merged} == {"2"}
    md = (tmp_path / "merged" / "qat_from_init.quick.md").read_text()
    # the table lists the methods in the order asked for, whatever order the files hold them in
    bench("qat_from_init", standin_weights, *common, "--methods", "he_normal", "ghn-qat", "--merge", *parts,
          "--out", str(tmp_path / "reordered"))
    assert [s["method"] for s in read_csv(tmp_path / "reordered" / "qat_from_init_summary.quick.csv")] == \
        ["he_normal", "ghn-qat"]
    assert "seeds [0, 1]" in md and "Merged from 2 result file(s)" in md and "Device: cpu" in md
    with pytest.raises(AssertionError, match="is in both"):  # the same run twice is refused, not double-counted
        bench("qat_from_init", standin_weights, *common, "--merge", parts[0], parts[0], "--out", str(tmp_path / "x"))


@needs_fmnist
def test_qat_from_init_clip_grad_goes_to_every_start_and_names_its_files(standin_weights, tmp_path):
    bench("qat_from_init", standin_weights, "--bits", "4", "--steps", "2", "--clip-grad", "1e-6",
          "--out", str(tmp_path))
    rows = read_csv(tmp_path / "qat_from_init_clip1e-06.quick.csv")
    assert {r["method"] for r in rows} == {"ghn-qat", "he_normal"}
    assert all(r["status"] == "ok" and r["clipped_steps"] == "2" for r in rows)  # every step cut, every start
    assert "clips its gradient to total norm 1e-06" in (tmp_path / "qat_from_init_clip1e-06.quick.md").read_text()


def test_qat_from_init_prints_median_step_counts_without_spurious_decimals():
    from benchmarks.qat_from_init import _step_count

    assert _step_count(390.0) == "390" and _step_count(390) == "390"  # was "390.000" in the Markdown table
    assert _step_count(35.0) == "35" and _step_count(35.5) == "35.5"  # an even count's median between steps
    assert _step_count("") == ""  # no architecture reached its target


def test_qat_from_init_reading_without_a_classic_init_says_there_is_no_target():
    from benchmarks.qat_from_init import reading

    row = {"bits": 4, "method": "ghn-qat", "final_mean": 0.73, "final_std": 0.05, "zero_shot_mean": 0.6,
           "target": float("nan"), "target_method": "", "steps_to_target": "not reached", "wins": 4}
    text = reading([row], [4], 4)
    assert "No classic init ran, so no steps-to-target." in text and "(ghn-qat" not in text
    text = reading([{**row, "target": 0.64, "target_method": "he_normal", "steps_to_target": 20}], [4], 4)
    assert "final accuracy (64.0%, he_normal): ghn-qat 20." in text


def test_qat_from_init_rejects_a_logit_std_the_library_refuses(tmp_path):
    from benchmarks.qat_from_init import main

    for bad in ("0", "-1", "inf", "nan", "auto"):
        with pytest.raises(SystemExit):
            main(["--quick", "--logit-std", bad, "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())


@needs_fmnist
def test_missing_ghn_weights_are_skipped_with_a_note(tmp_path):
    empty = tmp_path / "no_weights"
    empty.mkdir()
    out = tmp_path / "results"
    proc = bench("qat_from_init", empty, "--bits", "4", "--steps", "2", "--out", str(out))
    assert "skipping ghn-qat" in proc.stdout
    rows = read_csv(out / "qat_from_init.quick.csv")
    assert {r["method"] for r in rows} == {"he_normal"}
    md = (out / "qat_from_init.quick.md").read_text()
    assert "`ghn-qat` skipped" in md
    check_png(out / "qat_from_init.quick.png")


@pytest.fixture
def in_process_weights(standin_weights, monkeypatch):
    """The stand-in checkpoints for an in-process run, with the GHN caches reset around it."""
    from benchmarks import common
    from torch_qinit import initialize

    monkeypatch.setenv("TORCH_QINIT_WEIGHTS_DIR", str(standin_weights))
    initialize._ghn_cache.clear()
    common._ghn_check.cache_clear()
    yield standin_weights
    initialize._ghn_cache.clear()
    common._ghn_check.cache_clear()


def test_init_study_quick_cifar10(in_process_weights, tmp_path, monkeypatch):
    from tiny_cifar import use_tiny_cifar

    from benchmarks import init_study

    data = use_tiny_cifar(tmp_path, monkeypatch, n_train=80, n_test=40)
    out = tmp_path / "out"
    assert init_study.main(["--quick", "--dataset", "cifar10", "--data-dir", str(data), "--out", str(out)]) == 0
    assert not (out / "init_study.quick.csv").exists()
    rows = read_csv(out / "init_study_cifar10.quick.csv")
    assert {r["init"] for r in rows} == {"he_normal", "ghn-qat"}
    expected = sum(p.numel() for p in init_study.build_net("conv_bn", 3).build().parameters())
    for r in rows:
        assert r["status"] == "ok", r
        frac(r["float_acc"]), frac(r["w4a4_acc"])
        assert int(r["params"]) == expected  # built for 3 input channels
    assert len(read_csv(out / "init_study_cifar10_act_ranges.quick.csv")) == 5 * len(rows)
    check_png(out / "init_study_cifar10.quick.png")
    md = (out / "init_study_cifar10.quick.md").read_text()
    assert "# Initializer study: PTQ after float training, CIFAR-10" in md and "CIFAR-10, 80 training / 40 test" in md


def test_qat_from_init_quick_cifar10(in_process_weights, tmp_path, monkeypatch):
    from tiny_cifar import use_tiny_cifar

    from benchmarks import qat_from_init
    from torch_qinit.space import build_arch

    data = use_tiny_cifar(tmp_path, monkeypatch, n_train=80, n_test=40)
    out = tmp_path / "out"
    assert qat_from_init.main(["--quick", "--dataset", "cifar10", "--data-dir", str(data), "--bits", "4",
                               "--out", str(out)]) == 0
    assert not (out / "qat_from_init.quick.csv").exists()
    rows = read_csv(out / "qat_from_init_cifar10.quick.csv")
    assert {r["method"] for r in rows} == {"ghn-qat", "he_normal"}
    expected = sum(p.numel() for p in build_arch("test", 2, 3).parameters())
    for r in rows:
        assert r["status"] == "ok", r
        frac(r["acc_step0"]), frac(r["final_acc"])
        assert int(r["params"]) == expected
    assert sorted({int(r["step"]) for r in read_csv(out / "qat_from_init_cifar10_curves.quick.csv")}) == [0, 2, 4]
    check_png(out / "qat_from_init_cifar10.quick.png")
    assert "CIFAR-10, 80 training examples" in (out / "qat_from_init_cifar10.quick.md").read_text()


@needs_fmnist
def test_qat_from_init_quick_classic_split_with_sgd(standin_weights, tmp_path):
    """--split classic --optimizer sgd: the first classic family (LeNet-5), own result files, SGD's default lr."""
    bench("qat_from_init", standin_weights, "--out", str(tmp_path), "--split", "classic", "--optimizer", "sgd",
          "--methods", "he_normal", "--bits", "4")
    rows = read_csv(tmp_path / "qat_from_init_classic_sgd.quick.csv")
    assert [(r["arch"], r["method"], r["status"]) for r in rows] == [("0", "he_normal", "ok")]
    md = (tmp_path / "qat_from_init_classic_sgd.quick.md").read_text()
    assert "get_arch('classic', i)" in md and "sgd at lr 0.02" in md and "lenet5" in md
    assert not (tmp_path / "qat_from_init.quick.csv").exists()
