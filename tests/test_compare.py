"""torch_qinit.compare and `torch-qinit compare`: tiny models, generated data, seconds per test."""
from __future__ import annotations

import csv
import json
import math
import sys
import textwrap
import uuid

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torch_qinit.cli import compare as cli
from torch_qinit.compare import (
    EXIT_DIVERGED,
    EXIT_OK,
    EXIT_REQUIREMENT_FAILED,
    EXIT_USAGE,
    CompareError,
    DataError,
    ModelLoadError,
    check_requirements,
    compare,
    first_reach,
    load_image_folder,
    markdown,
    mean_std,
    parse_requirement,
)
from torch_qinit.qat import qat_finetune

CLASSIC = "he_normal,glorot_uniform"

MODEL_SRC = textwrap.dedent('''
    from torch import nn


    def tiny(num_classes=3, width=4):
        return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * width, num_classes))


    def mlp(num_classes=3):
        return nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, num_classes))


    def broken(num_classes=3):
        raise RuntimeError("width must be even")


    def not_a_module():
        return 42
''')

DATA_SRC = textwrap.dedent('''
    import torch
    from torch.utils.data import DataLoader, TensorDataset


    def make(n, seed):
        # 3 classes: a bright blob in one of three places, plus noise; learnable in a few steps.
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % 3
        x = 0.3 * torch.randn(n, 1, 6, 6, generator=g)
        for c in range(3):
            x[y == c, 0, 2 * c:2 * c + 2, :] += 2.0
        return TensorDataset(x, y)


    def loaders(batch_size=16, seed=0):
        train = DataLoader(make(96, 1), batch_size=16, shuffle=True,
                           generator=torch.Generator().manual_seed(seed))
        return train, DataLoader(make(48, 2), batch_size=48)


    def wrong_shape(batch_size=16):
        x, y = torch.randn(32, 3, 6, 6), torch.arange(32) % 3
        return DataLoader(TensorDataset(x, y), batch_size=16), DataLoader(TensorDataset(x, y), batch_size=16)
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user project: models.py and data.py (module names unique per test) and cwd inside it."""
    tag = uuid.uuid4().hex[:8]
    (tmp_path / f"models_{tag}.py").write_text(MODEL_SRC)
    (tmp_path / f"data_{tag}.py").write_text(DATA_SRC)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    yield {"dir": tmp_path, "models": f"models_{tag}", "data": f"data_{tag}"}
    for name in (f"models_{tag}", f"data_{tag}"):
        sys.modules.pop(name, None)


def _run(project, *extra, model=None, methods=CLASSIC):
    """The CLI with a small budget on the generated data; returns its exit code."""
    argv = [model or f"{project['models']}:tiny", "--data", f"{project['data']}:loaders", "--methods", methods,
            "--bits", "4", "--steps", "6", "--eval-every", "2", "--lr", "0.1", "--no-progress", "--no-plot",
            "--out", str(project["dir"] / "out"), *extra]
    return cli.main(argv)


# --------------------------------------------------------------------------- input forms


def test_module_factory_and_data_callable(project, capsys):
    code = _run(project, "--bits", "4,2", "--model-kwargs", '{"width": 6}')
    out = capsys.readouterr().out
    assert code == EXIT_OK
    res = json.loads((project["dir"] / "out" / "results.json").read_text())
    assert res["config"]["model"] == f"{project['models']}:tiny"
    assert res["config"]["model_kwargs"] == {"width": 6}
    assert res["config"]["bits"] == [4, 2] and res["exit_code"] == 0
    assert {(r["method"], r["bits"]) for r in res["summary"]} == {
        (m, b) for m in ("he_normal", "glorot_uniform") for b in (4, 2)}
    assert all(r["status"] == "ok" for r in res["runs"])
    # 6 QAT steps on separable data learn: well above the zero-shot accuracy on average.
    mean = lambda key: sum(r[key] for r in res["runs"]) / len(res["runs"])  # noqa: E731
    assert mean("final") > mean("zero_shot") + 0.2
    assert "| W4A4 | he_normal |" in out and "| W2A2 | glorot_uniform |" in out


def test_file_factory_via_path(project, capsys):
    path = project["dir"] / "sub" / "net.py"
    path.parent.mkdir()
    # The file imports a neighbour module: its own folder must be importable.
    (path.parent / "helper_mod_cmp.py").write_text("WIDTH = 5\n")
    path.write_text("from helper_mod_cmp import WIDTH\n" + MODEL_SRC.replace("width=4", "width=WIDTH"))
    code = _run(project, model=f"{path}:tiny")
    assert code == EXIT_OK, capsys.readouterr().err
    res = json.loads((project["dir"] / "out" / "results.json").read_text())
    assert res["config"]["model"].endswith("net.py:tiny")
    sys.modules.pop("helper_mod_cmp", None)


def test_python_api_with_loaders_and_callable():
    exec_ns: dict = {}
    exec(DATA_SRC, exec_ns)
    loaders = exec_ns["loaders"]()
    ns: dict = {}
    exec(MODEL_SRC, ns)
    res = compare(ns["tiny"], loaders, methods=["he_normal"], bits=4, act_bits=8, steps=4, eval_every=2)
    assert res.bit_configs() == [(4, 8)]
    row = res.summary_row("he_normal", 4)
    assert row is not None and row["runs_ok"] == 1
    assert [s for s, _ in res.runs[0].curve] == [0, 2, 4]  # step 0 is the zero-shot point
    assert res.runs[0].curve[0][1] == res.runs[0].zero_shot
    assert "W4A8" in markdown(res)


def test_seeds_mean_std_and_reproducible(project):
    ns: dict = {}
    exec(MODEL_SRC, ns)
    exec(DATA_SRC, ns)
    kw = dict(methods=["he_normal"], bits=4, steps=4, eval_every=2, seeds="0,1")
    a = compare(ns["tiny"], ns["loaders"], **kw)
    b = compare(ns["tiny"], ns["loaders"], **kw)
    finals = [r.final for r in a.runs]
    assert finals == [r.final for r in b.runs]  # seeded: same numbers twice
    row = a.summary_row("he_normal", 4)
    assert row["runs"] == 2
    assert row["final_mean"] == pytest.approx(sum(finals) / 2)
    assert row["final_std"] == pytest.approx(mean_std(finals)[1])
    assert "±" in markdown(a)


def test_epochs_set_the_step_count(project):
    ns: dict = {}
    exec(MODEL_SRC, ns)
    exec(DATA_SRC, ns)
    res = compare(ns["tiny"], ns["loaders"], methods=["he_normal"], bits=4, epochs=2, eval_every=3,
                  optimizer="sgd")
    assert res.config["steps"] == 2 * 6  # 96 images / batch 16 = 6 batches per epoch
    assert res.runs[0].curve[-1][0] == 12
    assert res.config["lr"] == 0.05  # SGD's default learning rate
    with pytest.raises(CompareError, match="not both"):
        compare(ns["tiny"], ns["loaders"], methods=["he_normal"], steps=3, epochs=1)
    with pytest.raises(CompareError, match="--device: device 'gpu0' is not a device name"):
        compare(ns["tiny"], ns["loaders"], methods=["he_normal"], steps=3, device="gpu0")
    if not torch.cuda.is_available():  # refused before any data loads, not as a failed run per method
        with pytest.raises(CompareError, match="no CUDA device"):
            compare(ns["tiny"], ns["loaders"], methods=["he_normal"], steps=3, device="cuda")


def test_imagefolder_dataset(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("test", 2)):
        for c, cls in enumerate(("cat", "dog")):
            d = tmp_path / "imgs" / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = (torch.rand(10, 12, 3, generator=g) * 100 + 100 * c).to(torch.uint8).numpy()
                img = pil.fromarray(arr)
                # One odd size: it is resized to the first image's size.
                (img.resize((6, 5)) if i == 1 else img).save(d / f"{i}.png")
    train, test, classes = load_image_folder(tmp_path / "imgs")
    assert classes == ["cat", "dog"]
    assert train.tensors[0].shape == (12, 3, 10, 12) and test.tensors[0].shape == (4, 3, 10, 12)
    assert train.tensors[1].tolist().count(1) == 6
    assert abs(float(train.tensors[0].mean())) < 1e-4  # normalized with the training statistics
    net = "torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), " \
          "torch.nn.Flatten(), torch.nn.Linear(4, 2))"
    (tmp_path / "rgbnet.py").write_text(f"import torch\n\ndef net():\n    return {net}\n")
    res = compare(f"{tmp_path / 'rgbnet.py'}:net", dataset="imagefolder", data_dir=tmp_path / "imgs",
                  methods=["he_normal"], bits=4, steps=2, batch_size=4)
    assert res.runs[0].status == "ok" and "2 classes, 3x10x12" in res.config["data"]
    with pytest.raises(DataError, match="no class folders"):
        load_image_folder(tmp_path / "imgs" / "train" / "cat")


# --------------------------------------------------------------------------- outputs


def test_outputs_json_csv_png_and_step_summary(project, monkeypatch, capsys):
    summary = project["dir"] / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    argv = [f"{project['models']}:tiny", "--data", f"{project['data']}:loaders", "--methods", CLASSIC, "--bits", "4",
            "--steps", "4", "--eval-every", "2", "--no-progress", "--out", str(project["dir"] / "out")]
    assert cli.main(argv) == EXIT_OK
    stdout = capsys.readouterr().out
    out = project["dir"] / "out"
    md = (out / "summary.md").read_text()
    assert md.startswith("### torch-qinit compare") and md in stdout
    text = summary.read_text()
    assert text.startswith("earlier step\n") and md in text  # appended, not overwritten
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["he_normal", "glorot_uniform"]
    assert all(0 <= float(r["final_mean"]) <= 1 for r in rows)
    with (out / "curves.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["method"] == "he_normal"]
    assert steps == [0, 2, 4]
    with (out / "runs.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2
    res = json.loads((out / "results.json").read_text())
    assert res["command"].startswith("torch-qinit compare ") and res["machine"]
    assert res["runs"][0]["curve"][0][0] == 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in stdout
    else:
        assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_steps_to_target_and_first_reach():
    assert first_reach([(0, 0.1), (2, 0.5), (4, 0.7)], 0.5) == 2
    assert first_reach({0: 0.1, 2: 0.4}, 0.5) is None
    ns: dict = {}
    exec(MODEL_SRC, ns)
    exec(DATA_SRC, ns)
    res = compare(ns["tiny"], ns["loaders"], methods=["he_normal", "glorot_uniform"], bits=4, steps=4, eval_every=2)
    best = max(res.summary, key=lambda r: r["final_mean"])
    for row in res.summary:
        assert row["target"] == best["final_mean"] and row["target_method"] == best["method"]
    assert best["steps_to_target"] is not None and best["steps_to_target"] <= 4
    assert mean_std([]) != mean_std([]) or math.isnan(mean_std([])[0])


# --------------------------------------------------------------------------- gates and exit codes


def test_gate_passes_and_fails(project, capsys):
    assert _run(project, "--require", "he_normal >= 0", "--require", "glorot_uniform:zero_shot > -1") == EXIT_OK
    capsys.readouterr()
    code = _run(project, "--require", "he_normal >= glorot_uniform + 200")
    captured = capsys.readouterr()
    assert code == EXIT_REQUIREMENT_FAILED
    assert "FAILED requirement 'he_normal >= glorot_uniform + 200'" in captured.err
    assert "**FAIL**" in captured.out
    res = json.loads((project["dir"] / "out" / "results.json").read_text())
    assert res["exit_code"] == 1 and res["requirements"][0]["passed"] is False


def test_requirement_parser():
    methods = ["ghn-qat", "ghn", "he_normal", "uniform_0.05"]
    r = parse_requirement("ghn-qat >= he_normal + 2", methods)
    assert (r.op, [t.method for t in r.lhs], [(t.method, t.value) for t in r.rhs]) == (
        ">=", ["ghn-qat"], [("he_normal", 0.0), (None, 2.0)])
    r = parse_requirement("ghn@2:zero_shot - 1.5pp > uniform_0.05@2", methods)
    assert (r.lhs[0].method, r.lhs[0].bits, r.lhs[0].metric, r.lhs[1].sign) == ("ghn", 2, "zero_shot", -1.0)
    assert r.rhs[0].method == "uniform_0.05"
    for bad, why in [("ghn-qat >= he_uniform", "unknown name"), ("__import__('os') > 1", "unknown name"),
                     ("ghn-qat he_normal", "exactly one comparison"), ("ghn-qat >= ", "empty"),
                     ("ghn-qat >= he_normal +", "ends with"), ("ghn:best > 1", "unknown metric"),
                     ("ghn-qat >= >= 1", "exactly one")]:
        with pytest.raises(CompareError, match=why):
            parse_requirement(bad, methods)


def test_requirement_on_failed_method_fails(project, monkeypatch, tmp_path):
    # No GHN checkpoints: ghn-qat is reported as failed, the classic method still runs.
    monkeypatch.setenv("TORCH_QINIT_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    ns: dict = {}
    exec(MODEL_SRC, ns)
    exec(DATA_SRC, ns)
    res = compare(ns["tiny"], ns["loaders"], methods=["ghn-qat", "he_normal"], bits=4, steps=2)
    [out] = check_requirements(res, ["ghn-qat >= he_normal"])
    assert not out.passed and "ghn-qat at 4 bits was not measured" in out.detail


# --------------------------------------------------------------------------- robustness


def test_method_failing_is_reported_while_others_run(project, monkeypatch, capsys):
    import torch_qinit

    real = torch_qinit.initialize_

    def flaky(model, *args, method="ghn-qat", **kwargs):
        if method == "glorot_uniform":
            raise ValueError("no servable layer in this model")
        return real(model, *args, method=method, **kwargs)

    monkeypatch.setattr(torch_qinit, "initialize_", flaky)
    code = _run(project)
    out = capsys.readouterr().out
    assert code == EXIT_OK
    line = next(ln for ln in out.splitlines() if "| glorot_uniform |" in ln)
    assert "failed: init: ValueError: no servable layer in this model" in line
    assert "| he_normal |" in out and "| W4A4 | he_normal | " in out
    res = json.loads((project["dir"] / "out" / "results.json").read_text())
    assert {r["method"]: r["status"] for r in res["runs"]} == {"he_normal": "ok", "glorot_uniform": "failed"}


def test_all_methods_failing_exits_2(project, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCH_QINIT_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    assert _run(project, methods="ghn-qat,ghn") == EXIT_USAGE
    captured = capsys.readouterr()
    assert "no method could run" in captured.err and "failed: init: GHNLoadError" in captured.out


@pytest.mark.parametrize("model, expected", [
    ("{m}:broken", "raised RuntimeError: width must be even"),
    ("{m}:not_a_module", "returned a int, not an nn.Module"),
    ("{m}:nope", "has no attribute 'nope'"),
    ("no_such_pkg_xyz.models:net", "no module named 'no_such_pkg_xyz'"),
    ("missing_file.py:net", "not found"),
    ("not-a-spec", "package.module:name"),
])
def test_bad_model_gives_one_clear_line(project, capsys, model, expected):
    code = _run(project, model=model.format(m=project["models"]))
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_factory_error_names_the_line(project, capsys):
    _run(project, model=f"{project['models']}:broken")
    err = capsys.readouterr().err
    assert f"{project['models']}.py:" in err  # where it raised, so the user can jump there


def test_data_that_does_not_fit(project, capsys):
    code = _run(project, "--data", f"{project['data']}:wrong_shape")
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "does not fit" in err and "[3, 6, 6]" in err
    assert len(err.strip().splitlines()) == 1
    ns: dict = {}
    exec(MODEL_SRC, ns)
    exec(DATA_SRC, ns)
    with pytest.raises(DataError, match="labels go up to 2 but .* outputs 2 classes"):
        compare(lambda: ns["tiny"](num_classes=2), ns["loaders"], methods=["he_normal"], steps=1)
    with pytest.raises(DataError, match=r"must return \(train_loader, test_loader\)"):
        compare(ns["tiny"], lambda: ns["loaders"]()[0], methods=["he_normal"], steps=1)
    with pytest.raises(ModelLoadError, match="--model-kwargs|unexpected keyword"):
        compare(ns["tiny"], ns["loaders"], model_kwargs={"depth": 3}, methods=["he_normal"], steps=1)


def test_usage_errors(project, capsys):
    assert _run(project, "--bits", "9") == EXIT_USAGE
    assert "2..8" in capsys.readouterr().err
    assert _run(project, "--model-kwargs", "{bad json") == EXIT_USAGE
    assert "not valid JSON" in capsys.readouterr().err
    assert _run(project, methods="he_normal,xavier") == EXIT_USAGE
    assert "unknown method(s) xavier" in capsys.readouterr().err
    assert _run(project, "--require", "he_normal >= orthogonal") == EXIT_USAGE
    assert "unknown name 'orthogonal'" in capsys.readouterr().err
    assert cli.main(["x.py:f", "--dataset", "fmnist", "--data", "m:f", "--no-progress"]) == EXIT_USAGE
    assert "exactly one of --dataset" in capsys.readouterr().err
    assert cli.main(["x.py:f", "--steps", "3", "--epochs", "1"]) == 2  # argparse: mutually exclusive


# --------------------------------------------------------------------------- divergence


def test_qat_finetune_flags_divergence_and_stops_early():
    g = torch.Generator().manual_seed(0)
    loader = DataLoader(TensorDataset(torch.randn(64, 1, 6, 6, generator=g), torch.randint(0, 3, (64,), generator=g)),
                        batch_size=16)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 3))
    with pytest.warns(UserWarning, match="non-finite"):
        res = qat_finetune(net, 4, loader, steps=60, lr=1e8, optimizer="sgd", nan_patience=5)
    assert res.diverged and res.steps_run < 60 and res.skipped_steps == 5
    ok = qat_finetune(net, 4, loader, epochs=1, lr=1e-3)
    assert not ok.diverged and ok.steps_run == ok.steps == 4  # 64 images / 16 per batch
    with pytest.raises(ValueError, match="either steps or epochs"):
        qat_finetune(net, 4, loader, steps=2, epochs=1)


def test_fail_on_divergence(project, capsys):
    args = ("--optimizer", "sgd", "--lr", "1e8", "--steps", "40")
    assert _run(project, *args, model=f"{project['models']}:mlp", methods="he_normal") == EXIT_OK
    out = capsys.readouterr().out
    assert "Diverged (QAT ended in NaN): he_normal W4A4 seed 0 (stopped at step" in out
    assert "diverged in 1/1 runs" in out
    code = _run(project, *args, "--fail-on-divergence", model=f"{project['models']}:mlp", methods="he_normal")
    assert code == EXIT_DIVERGED
    assert "ended in NaN (--fail-on-divergence)" in capsys.readouterr().err
    res = json.loads((project["dir"] / "out" / "results.json").read_text())
    run = res["runs"][0]
    assert run["diverged"] is True and run["stopped_at"] < 40
    assert [s for s, _ in run["curve"]][-1] == 40  # padded to the full budget for the mean curves


# --------------------------------------------------------------------------- GHN methods and built-in data


def test_ghn_method_runs_on_a_user_model(project):
    ns: dict = {}
    exec(MODEL_SRC, ns)
    exec(DATA_SRC, ns)
    res = compare(ns["tiny"], ns["loaders"], methods=["ghn-qat", "he_normal"], bits=4, steps=2, eval_every=1)
    ghn = next(r for r in res.runs if r.method == "ghn-qat")
    assert ghn.status == "ok", ghn.error
    assert ghn.fallback_params == 0  # conv, BN and linear: all served by the GHN
    assert res.config["ghn_weights"]["ghn-qat"].startswith("bundled:ghn-qat sha256 ")
    assert "input channels" in ghn.weights  # why initialize_ chose that checkpoint
    assert any("ghn-qat" in v and "classic init (he_normal)" in v for v in markdown(res).splitlines())


def test_builtin_datasets_are_forwarded(monkeypatch, tmp_path):
    import torch_qinit.data as data
    from torch_qinit.compare import resolve_data

    seen = {}

    def fake(batch_size=128, data_dir=None, train_subset=None, test_subset=None, seed=0):
        seen.update(batch_size=batch_size, data_dir=data_dir, train_subset=train_subset, test_subset=test_subset)
        ds = TensorDataset(torch.zeros(4, 3, 32, 32), torch.zeros(4, dtype=torch.int64))
        return DataLoader(ds, batch_size=2), DataLoader(ds, batch_size=2)

    monkeypatch.setattr(data, "cifar10_loaders", fake)
    got = resolve_data("cifar10", data_dir="somewhere", batch_size=32, train_size=100, test_size=50)
    assert seen == {"batch_size": 32, "data_dir": "somewhere", "train_subset": 100, "test_subset": 50}
    assert got.name.startswith("CIFAR-10 (4 train / 4 test")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        resolve_data("fmnist", data_dir=tmp_path / "empty")
    with pytest.raises(CompareError, match="needs --data-dir"):
        resolve_data("imagefolder")
