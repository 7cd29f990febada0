"""The GHN trainer: resume is bit-exact, data-parallel ranks stay identical, QAT runs."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from torch_qinit.ghn import GHN, GHNConfig
from torch_qinit.graph import capture
from torch_qinit.hub import save_pretrained
from torch_qinit.space import build_arch
from torch_qinit.training import (
    TrainConfig,
    load_trained_ghn,
    lr_at,
    sample_bits,
    step_generator,
    train,
    upgrade_decoder,
)

TINY = {"hidden": 32, "layers": 1, "heads": 4, "decoder_rank": 8}


def _data(n=256):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 12, 12, generator=g), torch.randint(0, 10, (n,), generator=g)


def _cfg(tmp_path, **kw):
    base = dict(out=str(tmp_path), steps=6, meta_batch=2, batch_size=16, ckpt_every=3, log_every=0,
                arch_pool=50, ghn=TINY, warmup=2)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_is_bit_exact(tmp_path):
    images, labels = _data()
    full = train(_cfg(tmp_path / "full", stage="qat"), images, labels)
    train(_cfg(tmp_path / "cut", stage="qat", stop_after=3), images, labels)       # "killed" after step 3
    resumed = train(_cfg(tmp_path / "cut", stage="qat"), images, labels, resume=True)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert (tmp_path / "full" / "final" / "model.safetensors").exists()


def test_a_warm_started_run_resumes_after_its_source_is_gone(tmp_path):
    # The resumed run rebuilds its GHN from its own state; the --init-from folder is not read again.
    import shutil

    images, labels = _data()
    train(_cfg(tmp_path / "float", steps=2), images, labels)
    full = train(_cfg(tmp_path / "full", stage="qat", init_from=str(tmp_path / "float" / "final")), images, labels)
    train(_cfg(tmp_path / "cut", stage="qat", stop_after=3, init_from=str(tmp_path / "float" / "final")),
          images, labels)
    shutil.rmtree(tmp_path / "float")
    resumed = train(_cfg(tmp_path / "cut", stage="qat", init_from=str(tmp_path / "float" / "final")), images, labels,
                    resume=True)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def _fresh_ghn(seed=0, **kw):
    torch.manual_seed(seed)
    return GHN(GHNConfig(**{**TINY, **kw}))


def test_qat_warm_start_from_float_run(tmp_path):
    images, labels = _data()
    trained = train(_cfg(tmp_path / "float", steps=3), images, labels).state_dict()
    fresh = _fresh_ghn().state_dict()
    # zero QAT steps: the QAT GHN is exactly the float run's final GHN, not a fresh one with the same seed
    start = train(_cfg(tmp_path / "qat0", stage="qat", steps=0, init_from=str(tmp_path / "float" / "final")),
                  images, labels)
    assert start.state_dict().keys() == trained.keys()
    for k, v in start.state_dict().items():
        assert torch.equal(v, trained[k]), k
    assert any(not torch.equal(fresh[k], trained[k]) for k in trained)
    # the training state (ckpt/) is a warm start too
    from_state = train(_cfg(tmp_path / "qat0s", stage="qat", steps=0, init_from=str(tmp_path / "float" / "ckpt")),
                       images, labels)
    for k, v in from_state.state_dict().items():
        assert torch.equal(v, trained[k]), k
    # and QAT steps then move on from there
    ghn = train(_cfg(tmp_path / "qat", stage="qat", steps=3, init_from=str(tmp_path / "float" / "final")),
                images, labels)
    assert ghn.config.method == "ghn-qat" and ghn.config.bits == (2, 3, 4, 8)
    assert ghn.config.training["warm_start"]["stage"] == "float"
    assert any(not torch.equal(v, trained[k]) for k, v in ghn.state_dict().items())


def test_warm_start_from_decoder_v1_keeps_the_encoder(tmp_path):
    """A version-1 checkpoint warm-starts a version-2 GHN: encoder tensors carried over, decoder fresh."""
    images, labels = _data()
    old = _fresh_ghn(seed=1, decoder_version=1, decoder_hidden=0, block_kernel=3)
    old.config.input_shape = tuple(images.shape[1:])
    save_pretrained(old, tmp_path / "v1")
    ghn = train(_cfg(tmp_path / "run", steps=0, init_from=str(tmp_path / "v1")), images, labels)
    assert ghn.config.decoder_version == GHNConfig.decoder_version == 2
    assert ghn.config.block_kernel == GHNConfig.block_kernel and ghn.config.decoder_hidden == GHNConfig.decoder_hidden
    new, before = ghn.state_dict(), old.state_dict()
    encoder = [k for k in before if not k.startswith("decoder.")]
    assert encoder and all(torch.equal(new[k], before[k]) for k in encoder)
    assert {k for k in new if k.startswith("decoder.")} != {k for k in before if k.startswith("decoder.")}
    # upgrade_decoder leaves a current-version GHN alone (same object)
    current = _fresh_ghn()
    assert upgrade_decoder(current) is current


def test_warm_start_from_another_dataset_records_the_new_input(tmp_path):
    """A GHN trained on 1x12x12 images, continued on 3x12x12 ones: same weights, the new input in its record."""
    gray, labels = _data()
    train(_cfg(tmp_path / "gray", steps=2), gray, labels)
    rgb = gray.repeat(1, 3, 1, 1)
    start = load_trained_ghn(str(tmp_path / "gray" / "final"))
    ghn = train(_cfg(tmp_path / "rgb", steps=0, init_from=str(tmp_path / "gray" / "final")), rgb, labels)
    assert ghn.config.input_shape == (3, 12, 12) and ghn.config.num_classes == 10
    assert start.config.input_shape == (1, 12, 12)
    for (name, a), b in zip(start.state_dict().items(), ghn.state_dict().values()):
        assert torch.equal(a, b), name


def test_bits_sampling_covers_float_uniform_and_mixed():
    cfg = TrainConfig(stage="qat", mixed_frac=0.3, float_frac=0.2)
    graph = capture(build_arch("train", 0))
    draws = [sample_bits(cfg, graph, step_generator(0, 0, s)) for s in range(200)]
    assert any(d is None for d in draws)
    assert {d for d in draws if isinstance(d, int)} == {2, 3, 4, 8}
    mixed = [d for d in draws if isinstance(d, dict)]
    assert mixed and all(set(m.values()) <= {2, 3, 4, 8} for m in mixed)
    assert sample_bits(TrainConfig(stage="float"), graph, step_generator(0, 0, 0)) is None
    # a width listed twice is drawn about twice as often (the CLI's way to weight 2-bit items)
    weighted = TrainConfig(stage="qat", bits=(2, 2, 4), mixed_frac=0.0, float_frac=0.0)
    widths = [sample_bits(weighted, graph, step_generator(1, 0, s)) for s in range(600)]
    assert 1.6 < widths.count(2) / widths.count(4) < 2.5


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0, steps=100, warmup=10)
    assert lr_at(cfg, 0) == pytest.approx(0.1, rel=0.05)
    assert lr_at(cfg, 50) < lr_at(cfg, 10) and lr_at(cfg, 99) < 0.01


def _ddp_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    images, labels = _data()
    ghn = train(_cfg(out, steps=3, ckpt_every=100), images, labels)
    save_file({k: v.contiguous() for k, v in ghn.state_dict().items()}, os.path.join(out, f"rank{rank}.safetensors"))
    torch.distributed.destroy_process_group()


def test_two_gloo_ranks_end_identical(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a, b = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and they trained: not equal to a fresh GHN with the same seed
    fresh = _fresh_ghn().state_dict()
    assert any(not torch.equal(fresh[k], a[k]) for k in a)


def test_curves_cli_plots_a_run(tmp_path):
    from torch_qinit.cli.curves import main as curves_main

    images, labels = _data()
    train(_cfg(tmp_path / "run", steps=4, log_every=2), images, labels)
    assert curves_main([str(tmp_path / "run"), "--out", str(tmp_path / "curve")]) == 0
    lines = (tmp_path / "curve.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("run,stage,global_step")  # header + steps 2 and 4
    assert curves_main([str(tmp_path / "missing")]) == 1


def test_float_loss_weight_mixes_the_float_loss_into_qat(tmp_path):
    """QAT with a float-loss weight trains a different GHN; in the float stage (no quantized draws) it changes
    nothing."""
    images, labels = _data()
    plain = train(_cfg(tmp_path / "q0", stage="qat", steps=3), images, labels)
    mixed = train(_cfg(tmp_path / "q1", stage="qat", steps=3, float_loss_weight=1.0), images, labels)
    assert any(not torch.equal(a, b) for a, b in zip(plain.state_dict().values(), mixed.state_dict().values()))
    f0 = train(_cfg(tmp_path / "f0", steps=2), images, labels)
    f1 = train(_cfg(tmp_path / "f1", steps=2, float_loss_weight=1.0), images, labels)
    for (name, a), b in zip(f0.state_dict().items(), f1.state_dict().values()):
        assert torch.equal(a, b), name


def test_item_clip_scales_each_architecture_and_is_recorded(tmp_path):
    """A tiny per-architecture clip clips every item (counted in the state and the final record) and so
    trains a different GHN than no clip; the step is still taken (no nan_steps)."""
    import json
    images, labels = _data()
    free = train(_cfg(tmp_path / "free", stage="qat", steps=3, item_clip=0.0), images, labels)
    tight = train(_cfg(tmp_path / "tight", stage="qat", steps=3, item_clip=1e-6), images, labels)
    assert any(not torch.equal(a, b) for a, b in zip(free.state_dict().values(), tight.state_dict().values()))
    state = json.loads((tmp_path / "tight" / "ckpt" / "state.json").read_text())
    assert state["clipped_items"] == 3 * 2 and state["dropped_items"] == 0 and state["nan_steps"] == 0
    record = json.loads((tmp_path / "tight" / "final" / "config.json").read_text())["training"]
    assert record["clipped_items"] == 6
    assert json.loads((tmp_path / "free" / "ckpt" / "state.json").read_text())["clipped_items"] == 0


def test_checkpoint_records_the_normalization_of_its_data(tmp_path):
    """A GHN trained on 3x32x32 images names CIFAR-10's per-channel statistics, in config and model card."""
    import json

    from torch_qinit.data.cifar10 import MEAN
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    train(_cfg(tmp_path / "c", steps=1, ckpt_every=1, val_every=0), images, labels)
    config = json.loads((tmp_path / "c" / "final" / "config.json").read_text())
    assert config["normalization"]["mean_0"] == pytest.approx(MEAN[0]) and "mean" not in config["normalization"]
    card = (tmp_path / "c" / "final" / "README.md").read_text()
    assert "CIFAR-10" in card and "- cifar10" in card and "Fashion-MNIST" not in card
    train(_cfg(tmp_path / "f", steps=1, ckpt_every=1, val_every=0), *_data())  # 12x12: no known dataset
    assert json.loads((tmp_path / "f" / "final" / "config.json").read_text())["normalization"] == {
        "mean": 0.2860, "std": 0.3530}


def test_time_budget_fits_the_schedule_and_a_resume_keeps_it(tmp_path, monkeypatch):
    from torch_qinit.training import trainer
    images, labels = _data()
    monkeypatch.setattr(trainer, "FIT_AFTER_STEPS", 2)
    clock = iter(range(0, 10_000, 10))  # every time.time() call advances 10 s
    monkeypatch.setattr(trainer.time, "time", lambda: float(next(clock)))
    cfg = _cfg(tmp_path, steps=1000, time_budget=5.0)  # 300 s; each step reads the clock a few times
    ghn = train(cfg, images, labels)
    assert 2 < cfg.steps < 1000
    assert ghn.config.training["steps"] == cfg.steps
    assert (tmp_path / "final" / "model.safetensors").exists()
    # resuming with a different --steps keeps the fitted schedule instead of refitting
    again = _cfg(tmp_path, steps=5000, time_budget=5.0)
    train(again, images, labels, resume=True)
    assert again.steps == cfg.steps


def test_fit_steps_to_budget_bounds():
    from torch_qinit.training import fit_steps_to_budget
    cfg = TrainConfig(steps=1000, time_budget=10.0)  # 600 s
    assert fit_steps_to_budget(cfg, 20, elapsed=100.0, step_seconds=1.0) == 20 + int(500 * 0.9)
    assert fit_steps_to_budget(cfg, 20, elapsed=10.0, step_seconds=0.01) == 1000      # never above --steps
    assert fit_steps_to_budget(cfg, 20, elapsed=900.0, step_seconds=1.0) == 20        # spent: end now
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="time_budget"):
            TrainConfig(time_budget=bad)


def test_device_names_are_checked_before_any_work():
    with pytest.raises(ValueError, match="not a device name"):
        TrainConfig(device="not-a-device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            TrainConfig(device="cuda")


def test_tile_encoding_stays_on_the_device_of_its_indices():
    from torch_qinit.ghn.decoder import tile_encoding
    idx = torch.arange(5, device="meta")  # a GHN moved to a GPU decodes there; meta stands in on CPU-only CI
    assert tile_encoding(idx).device.type == "meta"
    torch.testing.assert_close(tile_encoding(torch.arange(5))[0], torch.tensor([0.0] * 8 + [1.0] * 8))


def test_training_state_files_hold_cpu_tensors_and_resume_onto_the_ghn_device(tmp_path):
    images, labels = _data()
    train(_cfg(tmp_path, steps=3, device="cpu"), images, labels)
    tensors = load_file(str(tmp_path / "ckpt" / "state.safetensors"))
    assert {t.device.type for t in tensors.values()} == {"cpu"}
    assert any(k.startswith("adam.exp_avg.") for k in tensors)
