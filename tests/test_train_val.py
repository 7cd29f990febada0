"""Held-out validation during GHN training: the val split, the val rows, resume, curves."""
import json

import pytest
import torch

from torch_qinit.space import HELD_OUT_SAMPLED, SPLIT_SIZES, SPLITS, get_arch, sampler
from torch_qinit.training import TrainConfig, train
from torch_qinit.training.validation import make_val_data, val_bits, validate

TINY = {"hidden": 32, "layers": 1, "heads": 4, "decoder_rank": 8}


def _data(n=256, seed=0):
    """Learnable 12x12 images: a class prototype plus noise."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(10, 1, 12, 12, generator=torch.Generator().manual_seed(99))
    y = torch.randint(0, 10, (n,), generator=g)
    return protos[y] + 0.5 * torch.randn(n, 1, 12, 12, generator=g), y


def _cfg(tmp_path, **kw):
    base = dict(out=str(tmp_path), steps=6, meta_batch=2, batch_size=16, ckpt_every=3, log_every=2,
                arch_pool=50, ghn=TINY, warmup=2, val_every=2, val_archs=1)
    base.update(kw)
    return TrainConfig(**base)


# --------------------------------------------------------------------------- the split

@pytest.mark.parametrize("channels", [1, 3])
def test_val_split_is_disjoint_from_train_and_test(channels):
    assert "val" in SPLITS and "val" in HELD_OUT_SAMPLED and SPLIT_SIZES["val"] == 20
    val = [get_arch("val", i, channels).key() for i in range(SPLIT_SIZES["val"])]
    assert len(set(val)) == len(val)
    bench = {get_arch(s, i, channels).key() for s in ("test", "wide", "deep", "nobn") for i in range(SPLIT_SIZES[s])}
    assert not set(val) & bench
    assert set(val) <= sampler._held_out_keys(channels, 10)
    train = {get_arch("train", i, channels).key() for i in range(1000)}
    assert not set(val) & train
    # val is drawn like test (the training distribution): CNNs with an occasional MLP
    families = {get_arch("val", i, channels).family for i in range(SPLIT_SIZES["val"])}
    assert "cnn" in families


def test_a_training_draw_equal_to_a_val_arch_is_redrawn():
    """Train index 9892's first draw is val architecture 3; training must draw another net there."""
    first = sampler._sample(sampler._rng("train", 9892), "test", 1, 10)
    assert first.key() == get_arch("val", 3).key()
    assert get_arch("train", 9892).key() != first.key()


# --------------------------------------------------------------------------- validate()

def test_validate_measures_accuracy_on_the_given_test_images():
    """Each test image is predicted as exactly one class, so the accuracies under both labelings of 2 classes sum
    to 1."""
    torch.manual_seed(0)
    from torch_qinit.ghn import GHN, GHNConfig
    ghn = GHN(GHNConfig(**TINY, input_shape=(1, 12, 12)))
    ghn.train()
    (x, y), (tx, ty) = _data(256), _data(60, seed=1)
    state = {k: v.clone() for k, v in ghn.state_dict().items()}
    rng = torch.get_rng_state()
    accs = [validate(ghn, make_val_data(x, y % 2, tx, (ty + k) % 2, archs=2))["val_float"] for k in range(2)]
    assert sum(accs) == pytest.approx(1.0, abs=1e-3) and accs[0] != accs[1]
    # nothing of the training state moved: weights, train mode, global RNG
    assert ghn.training and all(m.training for m in ghn.modules())
    assert all(torch.equal(v, state[k]) for k, v in ghn.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    # a QAT GHN is also measured at W4A4 and W2A2
    ghn.config.bits = (2, 3, 4, 8)
    assert list(val_bits(ghn)) == ["val_float", "val_w4", "val_w2"]
    assert set(validate(ghn, make_val_data(x, y, tx, ty, archs=1))) == {"val_float", "val_w4", "val_w2"}


def test_val_options_are_checked():
    with pytest.raises(ValueError, match="val_every"):
        TrainConfig(val_every=-1)
    with pytest.raises(ValueError, match="val_archs"):
        TrainConfig(val_archs=SPLIT_SIZES["val"] + 1)
    TrainConfig(val_every=0, val_archs=0)  # disabled: val_archs is not looked at


# --------------------------------------------------------------------------- the trainer

def test_val_rows_every_n_steps_and_at_the_end(tmp_path):
    (x, y), test = _data(), _data(100, seed=1)
    ghn = train(_cfg(tmp_path, stage="qat", steps=5, log_every=1), x, y, val_data=test)
    hist = json.loads((tmp_path / "ckpt" / "state.json").read_text())["history"]
    val_rows = [h for h in hist if "val_float" in h]
    assert [h["step"] for h in val_rows] == [2, 4, 5]
    for h in val_rows:
        assert {"val_w4", "val_w2", "val_sec"} <= h.keys()
        assert all(0.0 <= h[k] <= 1.0 for k in ("val_float", "val_w4", "val_w2"))
    assert any(h["val_float"] != h["acc"] for h in val_rows)  # not the training-batch accuracy
    assert all("val_float" not in h for h in hist if h["step"] % 2 and h["step"] != 5)
    assert ghn.config.training["val"]["val_float"] == val_rows[-1]["val_float"]
    # float stage: float accuracy only; a val step without a training log gets its own row
    train(_cfg(tmp_path / "f", steps=3, log_every=2, val_every=3), x, y, val_data=test)
    hist = json.loads((tmp_path / "f" / "ckpt" / "state.json").read_text())["history"]
    assert [set(h) - {"sec", "lr"} for h in hist] == [{"step", "loss", "acc"}, {"step", "val_float", "val_sec"}]
    # no test data or val_every=0: no validation
    train(_cfg(tmp_path / "n", steps=2, val_every=0), x, y, val_data=test)
    train(_cfg(tmp_path / "m", steps=2), x, y)
    for run in ("n", "m"):
        hist = json.loads((tmp_path / run / "ckpt" / "state.json").read_text())["history"]
        assert hist and not any("val_float" in h for h in hist)


def test_validation_changes_nothing_and_resume_stays_bit_exact(tmp_path):
    (x, y), test = _data(), _data(100, seed=1)
    plain = train(_cfg(tmp_path / "plain", stage="qat", val_every=0), x, y)
    full = train(_cfg(tmp_path / "full", stage="qat"), x, y, val_data=test)
    for (name, a), b in zip(plain.state_dict().items(), full.state_dict().values()):
        assert torch.equal(a, b), name
    train(_cfg(tmp_path / "cut", stage="qat", stop_after=3), x, y, val_data=test)
    resumed = train(_cfg(tmp_path / "cut", stage="qat"), x, y, resume=True, val_data=test)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    rows = {r: [{k: v for k, v in h.items() if k.startswith("val_") and k != "val_sec"}
                for h in json.loads((tmp_path / r / "ckpt" / "state.json").read_text())["history"]]
            for r in ("full", "cut")}
    assert rows["full"] == rows["cut"] and sum(map(bool, rows["full"])) == 3


def test_a_checkpoint_from_before_validation_resumes(tmp_path):
    """state.json written before val existed (no val fields anywhere) resumes, with validation from then on."""
    (x, y), test = _data(), _data(100, seed=1)
    full = train(_cfg(tmp_path / "full", val_every=0), x, y)
    train(_cfg(tmp_path / "old", val_every=0, stop_after=3), x, y)
    state_json = tmp_path / "old" / "ckpt" / "state.json"
    meta = json.loads(state_json.read_text())
    for k in ("val_every", "val_archs"):
        del meta["train_config"][k]
    state_json.write_text(json.dumps(meta))
    resumed = train(_cfg(tmp_path / "old", val_every=3), x, y, resume=True, val_data=test)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    hist = json.loads(state_json.read_text())["history"]
    assert [h["step"] for h in hist if "val_float" in h] == [6]


# --------------------------------------------------------------------------- curves

def test_curves_plot_val_when_present(tmp_path):
    from torch_qinit.cli.curves import main as curves_main
    from torch_qinit.cli.curves import read_history, val_series

    (x, y), test = _data(), _data(100, seed=1)
    train(_cfg(tmp_path / "float", steps=4, log_every=2, val_every=3), x, y, val_data=test)
    train(_cfg(tmp_path / "plain", steps=4, log_every=2, val_every=0), x, y)
    _, hist = read_history(tmp_path / "float")
    series = val_series(hist, offset=10)
    assert list(series) == ["val_float"] and series["val_float"][0] == [13, 14]
    assert val_series(read_history(tmp_path / "plain")[1]) == {}
    for runs, name in (([tmp_path / "float", tmp_path / "plain"], "both"), ([tmp_path / "plain"], "plain")):
        assert curves_main([*map(str, runs), "--out", str(tmp_path / name)]) == 0
        assert (tmp_path / f"{name}.png").is_file()
    header, *rows = (tmp_path / "both.csv").read_text().splitlines()
    assert "val_float" in header.split(",") and len(rows) == 3 + 2  # float: steps 2, 3 (val only), 4; plain: 2, 4
    assert "val_float" not in (tmp_path / "plain.csv").read_text().splitlines()[0]


def test_train_cli_validates_on_the_test_split(tmp_path, monkeypatch):
    from tiny_cifar import use_tiny_cifar

    from torch_qinit.cli.main import main

    data = use_tiny_cifar(tmp_path, monkeypatch)
    common = ["train", "--dataset", "cifar10", "--data-dir", str(data), "--steps", "2", "--meta-batch", "1",
              "--batch-size", "4", "--arch-pool", "3", "--hidden", "32", "--layers", "1", "--heads", "4",
              "--decoder-hidden", "24", "--decoder-rank", "4", "--warmup", "1", "--norm-floor-weight", "2.5"]
    assert main([*common, "--val-every", "1", "--val-archs", "2", "--out", str(tmp_path / "run")]) == 0
    state = json.loads((tmp_path / "run" / "ckpt" / "state.json").read_text())
    assert [h["step"] for h in state["history"] if "val_float" in h] == [1, 2]
    assert state["train_config"]["val_every"] == 1 and state["train_config"]["val_archs"] == 2
    assert state["ghn_config"]["decoder_hidden"] == 24 and state["ghn_config"]["decoder_rank"] == 4
    assert state["train_config"]["norm_floor_weight"] == 2.5
    assert main([*common, "--val-archs", "21", "--out", str(tmp_path / "bad")]) == 2
