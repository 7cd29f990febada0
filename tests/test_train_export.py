"""`torch-qinit export`: a run's GHN as a checkpoint, stopped early or completed, with one training record."""
import json

import pytest
import torch
from test_train import TINY, _data

from torch_qinit.cli.main import main as cli
from torch_qinit.hub import load_ghn
from torch_qinit.training import TrainConfig, export_run, train


def _cfg(out, **kw):
    base = dict(out=str(out), steps=4, meta_batch=2, batch_size=8, ckpt_every=2, log_every=0,
                arch_pool=30, ghn=TINY, warmup=1, stage="qat", command="torch-qinit train (test)")
    return TrainConfig(**{**base, **kw})


def test_stopped_run_exports_what_it_trained_and_says_where_it_stopped(tmp_path):
    images, labels = _data(128)
    ghn = train(_cfg(tmp_path / "run", stop_after=2), images, labels)
    assert not (tmp_path / "run" / "final").exists()  # the case export exists for
    record = export_run(tmp_path / "run", tmp_path / "out", dtype=None)
    assert record["steps"] == 2 and record["scheduled_steps"] == 4
    assert record["stopped_at"] == "step 2 of 4; resumable"
    loaded = load_ghn(str(tmp_path / "out"))
    assert loaded.config.method == "ghn-qat" and tuple(loaded.config.bits) == (2, 3, 4, 8)
    assert loaded.config.training == record
    for k, v in ghn.state_dict().items():  # float32 export: exactly the state's weights
        assert torch.equal(loaded.state_dict()[k], v), k


def test_completed_run_export_matches_the_trainers_final_record(tmp_path):
    images, labels = _data(128)
    train(_cfg(tmp_path / "run"), images, labels)
    final = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["training"]
    exported = export_run(tmp_path / "run", tmp_path / "out")
    assert "stopped_at" not in exported
    final.pop("host_cpus")  # only a live process knows the machine it trained on
    assert exported == final
    # float16 by default, like the bundled checkpoints; loading casts back to float32
    half = load_ghn(str(tmp_path / "out"))
    full = load_ghn(str(tmp_path / "run" / "final"))
    for k, v in full.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(half.state_dict()[k], v.half().float()), k


def test_warm_start_record_is_carried_from_the_state(tmp_path):
    images, labels = _data(128)
    train(_cfg(tmp_path / "float", stage="float", steps=2, command="float run"), images, labels)
    train(_cfg(tmp_path / "qat", stop_after=2, init_from=str(tmp_path / "float" / "final")), images, labels)
    record = export_run(tmp_path / "qat", tmp_path / "out")
    assert record["warm_start"] == {"command": "float run", "steps": 2, "stage": "float", "nan_steps": 0}


def test_cli_export_and_missing_state(tmp_path, capsys):
    images, labels = _data(128)
    train(_cfg(tmp_path / "run", stop_after=2), images, labels)
    assert cli(["export", str(tmp_path / "run"), str(tmp_path / "out")]) == 0
    assert "step 2 of 4" in capsys.readouterr().out
    assert (tmp_path / "out" / "model.safetensors").exists()
    assert cli(["export", str(tmp_path / "nothing"), str(tmp_path / "out2")]) == 1
    err = capsys.readouterr().err
    assert "no training state" in err and "ckpt" in err
    assert not (tmp_path / "out2").exists()
    with pytest.raises(FileNotFoundError):
        export_run(tmp_path / "nothing", tmp_path / "out3")
