"""torch_qinit.hub: checkpoint layout, integrity checks, bundled weights, Hub downloads (stand-in server)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from hub_server import FakeHub
from safetensors import safe_open

from torch_qinit.ghn.config import GHNConfig
from torch_qinit.ghn.model import GHN
from torch_qinit.hub import (
    BUNDLED_CHECKPOINTS,
    CONFIG_NAME,
    MODEL_CARD_NAME,
    WEIGHTS_DIR_ENV,
    WEIGHTS_NAME,
    GHNLoadError,
    bundled_checkpoint_dir,
    bundled_weights_dir,
    ghn_fingerprint,
    load_ghn,
    save_pretrained,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMAND = "torch-qinit train --method ghn-qat --steps 10"


def small_config(**overrides) -> GHNConfig:
    kw = dict(hidden=16, layers=1, heads=2, block_out=8, block_in=8, block_kernel=3, decoder_rank=4,
              training={"command": COMMAND, "steps": 10})
    kw.update(overrides)
    return GHNConfig(**kw)


def make_ghn(seed: int = 0, **overrides) -> GHN:
    torch.manual_seed(seed)
    return GHN(small_config(**overrides))


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


def different_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def rewrite_config(directory: Path, **changes) -> dict:
    cfg = json.loads((directory / CONFIG_NAME).read_text())
    cfg.update(changes)
    (directory / CONFIG_NAME).write_text(json.dumps(cfg))
    return cfg


# --------------------------------------------------------------------------- local layout


def test_save_layout_and_roundtrip(tmp_path: Path):
    ghn = make_ghn(0)
    out = save_pretrained(ghn, tmp_path / "ckpt")
    assert out == tmp_path / "ckpt"
    assert {p.name for p in out.iterdir()} == {WEIGHTS_NAME, CONFIG_NAME, MODEL_CARD_NAME}
    cfg = json.loads((out / CONFIG_NAME).read_text())
    assert cfg["weights_sha256"] == hashlib.sha256((out / WEIGHTS_NAME).read_bytes()).hexdigest()
    cfg.pop("weights_sha256")
    assert GHNConfig.from_dict(cfg) == ghn.config
    card = (out / MODEL_CARD_NAME).read_text()
    for needle in ("library_name: torch_qinit", "Fashion-MNIST", "0.2860", "0.3530", COMMAND,
                   "2, 3, 4, 8", "inverted-bottleneck", cfg["method"]):
        assert needle in card, needle

    ghn.train()
    loaded = load_ghn(out)
    assert isinstance(loaded, GHN) and not loaded.training
    assert loaded.config == ghn.config
    assert_same_weights(loaded, ghn)
    assert loaded.source_id == f"local:{out.resolve()}"
    assert ghn_fingerprint(loaded) == (loaded.source_id, cfg_sha(out))
    # a path to one of the files means its directory
    assert_same_weights(load_ghn(str(out / WEIGHTS_NAME)), ghn)


def cfg_sha(directory: Path) -> str:
    return json.loads((directory / CONFIG_NAME).read_text())["weights_sha256"]


def test_fingerprint_of_unsaved_ghn_is_content_hash():
    a, b, c = make_ghn(0), make_ghn(0), make_ghn(1)
    src, sha = ghn_fingerprint(a)
    assert src == "unsaved" and len(sha) == 64
    assert ghn_fingerprint(b) == (src, sha)
    assert ghn_fingerprint(c)[1] != sha


def test_float16_storage_and_custom_card(tmp_path: Path):
    ghn = make_ghn(0)
    full = save_pretrained(ghn, tmp_path / "fp32")
    half = save_pretrained(ghn, tmp_path / "fp16", model_card="# my card\n", dtype=torch.float16)
    assert (half / MODEL_CARD_NAME).read_text() == "# my card\n"
    with safe_open(str(half / WEIGHTS_NAME), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    assert (half / WEIGHTS_NAME).stat().st_size < 0.6 * (full / WEIGHTS_NAME).stat().st_size
    loaded = load_ghn(half)
    for k, v in loaded.state_dict().items():
        assert v.dtype == torch.float32, k
        torch.testing.assert_close(v, ghn.state_dict()[k], rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="floating"):
        save_pretrained(ghn, tmp_path / "bad", dtype=torch.int8)


def test_default_card_mentions_half_precision(tmp_path: Path):
    out = save_pretrained(make_ghn(0), tmp_path / "c", dtype=torch.float16)
    assert "(float16)" in (out / MODEL_CARD_NAME).read_text()


def test_save_rejects_non_ghn(tmp_path: Path):
    with pytest.raises(TypeError, match="GHNConfig"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path)


def test_checksum_mismatch(tmp_path: Path):
    out = save_pretrained(make_ghn(0), tmp_path / "c")
    blob = bytearray((out / WEIGHTS_NAME).read_bytes())
    blob[-1] ^= 0xFF  # still a valid safetensors file, one weight changed
    (out / WEIGHTS_NAME).write_bytes(bytes(blob))
    with pytest.raises(GHNLoadError, match="checksum mismatch"):
        load_ghn(out)


def test_truncated_safetensors(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    out = save_pretrained(make_ghn(0), tmp_path / "c")
    blob = (out / WEIGHTS_NAME).read_bytes()[:-50]
    (out / WEIGHTS_NAME).write_bytes(blob)
    rewrite_config(out, weights_sha256=hashlib.sha256(blob).hexdigest())  # get past the checksum
    with pytest.raises(GHNLoadError, match="not a valid safetensors"):
        load_ghn(out)
    (out / WEIGHTS_NAME).write_bytes(b"\x00" * 7)
    cfg = rewrite_config(out)
    cfg.pop("weights_sha256")
    (out / CONFIG_NAME).write_text(json.dumps(cfg))
    with caplog.at_level(logging.WARNING, logger="torch_qinit.hub._hub"):
        with pytest.raises(GHNLoadError, match="not a valid safetensors"):
            load_ghn(out)
    assert "cannot verify" in caplog.text


def test_config_not_matching_weights(tmp_path: Path):
    out = save_pretrained(make_ghn(0), tmp_path / "c")
    rewrite_config(out, decoder_rank=6)
    # which decoder tensors depend on decoder_rank is the decoder's business; that they are named is ours
    with pytest.raises(GHNLoadError, match=r"shape mismatches: decoder\.\S+: checkpoint \(\d+, \d+\) vs model"):
        load_ghn(out)
    rewrite_config(out, decoder_rank=4, layers=2)
    with pytest.raises(GHNLoadError, match=r"missing keys: layers\.1\.") as info:
        load_ghn(out)
    assert "does not match its config.json" in str(info.value)
    rewrite_config(out, layers=1)
    extra = make_ghn(0, layers=2)
    save_pretrained(extra, tmp_path / "two")
    shutil.copy(tmp_path / "two" / WEIGHTS_NAME, out / WEIGHTS_NAME)
    rewrite_config(out, weights_sha256=cfg_sha(tmp_path / "two"))
    with pytest.raises(GHNLoadError, match=r"unexpected keys: layers\.1\."):
        load_ghn(out)


def test_bad_config_files(tmp_path: Path):
    out = save_pretrained(make_ghn(0), tmp_path / "c")
    rewrite_config(out, not_a_field=1)
    with pytest.raises(GHNLoadError, match="not_a_field"):
        load_ghn(out)
    (out / CONFIG_NAME).write_text("{not json")
    with pytest.raises(GHNLoadError, match="JSON"):
        load_ghn(out)
    (out / CONFIG_NAME).unlink()
    with pytest.raises(GHNLoadError, match="config.json is missing"):
        load_ghn(out)


@pytest.mark.parametrize("change, field", [
    ({"heads": 3}, "heads"),            # hidden 16 not divisible: was ValueError from the constructor
    ({"heads": 0}, "heads"),            # was ZeroDivisionError
    ({"hidden": "128"}, "hidden"),      # was TypeError
    ({"decoder_rank": -1}, "decoder_rank"),  # was RuntimeError
    ({"layers": 1.5}, "layers"),
    ({"hidden": True}, "hidden"),
    ({"bits": [1, 4]}, "bits"),
    ({"method": "magic"}, "method"),
    ({"input_shape": [0, 28, 28]}, "input_shape"),
    ({"normalization": {"mean": "x"}}, "normalization"),
])
def test_invalid_config_raises_ghnloaderror_naming_the_field(tmp_path: Path, change: dict, field: str):
    out = save_pretrained(make_ghn(0), tmp_path / "c")
    rewrite_config(out, **change)
    with pytest.raises(GHNLoadError, match=f"field '{field}'"):
        load_ghn(out)


# --------------------------------------------------------------------------- bundled checkpoints


@pytest.fixture
def bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, GHN]:
    root = tmp_path / "weights"
    ghns = {"ghn-qat": make_ghn(1), "ghn": make_ghn(2, method="ghn")}
    for sub, ghn in ghns.items():
        save_pretrained(ghn, root / sub, dtype=torch.float16)
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(root))
    return ghns


def test_bundled_names(bundled: dict[str, GHN]):
    assert set(BUNDLED_CHECKPOINTS) == {"default", "ghn-qat", "ghn", "ghn-qat-cifar10", "ghn-cifar10"}
    with pytest.raises(GHNLoadError, match="'ghn-qat-cifar10' is not installed"):
        load_ghn("ghn-qat-cifar10")  # a known name, not in this folder
    default = load_ghn()
    assert default.source_id == "bundled:ghn-qat"
    assert load_ghn("ghn-qat").weights_sha256 == default.weights_sha256
    float_ghn = load_ghn("ghn")
    assert float_ghn.source_id == "bundled:ghn" and float_ghn.config.method == "ghn"
    assert different_weights(default, float_ghn)
    torch.testing.assert_close(default.state_dict()["op_embed.weight"],
                               bundled["ghn-qat"].state_dict()["op_embed.weight"], rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="revision"):
        load_ghn("default", revision="v1")


def test_bundled_missing_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.raises(GHNLoadError, match="not installed") as info:
        load_ghn()
    assert WEIGHTS_DIR_ENV in str(info.value) and str(tmp_path / "ghn-qat") in str(info.value)


def test_bundled_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    root = bundled_weights_dir()
    # source checkout / editable install: <repo>/weights; wheel install: site-packages/torch_qinit/weights
    assert root.name == "weights" and root.is_dir()
    assert bundled_checkpoint_dir() == root / "ghn-qat" and bundled_checkpoint_dir("ghn") == root / "ghn"
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    assert bundled_weights_dir() == tmp_path
    with pytest.raises(ValueError, match="bundled names"):
        bundled_checkpoint_dir("nope")


@pytest.mark.parametrize("name", ["ghn_qat", "GHN", "./no/such/dir", "a/b/c", "bad name/x"])
def test_unknown_name(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="not a bundled checkpoint") as info:
        load_ghn(name)
    for bundled_name in BUNDLED_CHECKPOINTS:
        assert bundled_name in str(info.value)


def test_revision_rejected_for_local_dir(tmp_path: Path):
    out = save_pretrained(make_ghn(0), tmp_path / "c")
    with pytest.raises(ValueError, match="revision"):
        load_ghn(out, revision="main")


# --------------------------------------------------------------------------- Hugging Face Hub (stand-in)


def publish(hub: FakeHub, tmp_path: Path, repo: str, ghn: GHN, revision: str = "main", **kw) -> str:
    out = save_pretrained(ghn, tmp_path / f"pub-{repo.replace('/', '--')}-{revision}", **kw)
    return hub.add_dir(repo, out, revision)


def test_hub_download_then_cache(hub: FakeHub, tmp_path: Path):
    ghn = make_ghn(3)
    commit = publish(hub, tmp_path, "me/ghn-test", ghn)
    cache = tmp_path / "cache"
    first = load_ghn("me/ghn-test", cache_dir=cache)
    assert_same_weights(first, ghn)
    assert not first.training
    assert first.source_id == f"hf:me/ghn-test@{commit}"
    assert hub.count("GET", WEIGHTS_NAME) == 1 and hub.count("GET", CONFIG_NAME) == 1
    assert hub.count("GET", MODEL_CARD_NAME) == 1  # the card is fetched too, for offline reading
    assert "torch_qinit/" in hub.last_user_agent
    heads = hub.count("HEAD", WEIGHTS_NAME)
    second = load_ghn("me/ghn-test", cache_dir=cache)
    assert_same_weights(second, ghn)
    assert hub.count("GET", WEIGHTS_NAME) == 1  # body not downloaded again
    assert hub.count("HEAD", WEIGHTS_NAME) == heads + 1  # only revalidated


def test_hub_revision_pinning(hub: FakeHub, tmp_path: Path):
    v1, v2 = make_ghn(4), make_ghn(5)
    c1 = publish(hub, tmp_path, "me/pinned", v1, "v1")
    publish(hub, tmp_path, "me/pinned", v2, "main")
    cache = tmp_path / "cache"
    got_main = load_ghn("me/pinned", cache_dir=cache)
    got_v1 = load_ghn("me/pinned", revision="v1", cache_dir=cache)
    assert_same_weights(got_main, v2)
    assert_same_weights(got_v1, v1)
    assert got_v1.source_id == f"hf:me/pinned@{c1}"
    assert got_v1.weights_sha256 != got_main.weights_sha256
    by_commit = load_ghn("me/pinned", revision=c1, cache_dir=cache)
    assert_same_weights(by_commit, v1)
    assert hub.count("GET", WEIGHTS_NAME, revision="v1") == 1


def test_hub_not_found_errors(hub: FakeHub, tmp_path: Path):
    publish(hub, tmp_path, "me/exists", make_ghn(0))
    hub.add_files("me/config-only", {CONFIG_NAME: b"{}"})
    cache = tmp_path / "cache"
    with pytest.raises(GHNLoadError, match="repository not found") as info:
        load_ghn("me/missing", cache_dir=cache)
    assert "'me/missing'" in str(info.value) and "config.json" in str(info.value)
    with pytest.raises(GHNLoadError, match="revision not found") as info:
        load_ghn("me/exists", revision="v9", cache_dir=cache)
    assert "'v9'" in str(info.value) and "'me/exists'" in str(info.value)
    with pytest.raises(GHNLoadError, match="file not found") as info:
        load_ghn("me/config-only", cache_dir=cache)
    assert "'model.safetensors'" in str(info.value)


def test_hub_checksum_checked_on_download(hub: FakeHub, tmp_path: Path):
    out = save_pretrained(make_ghn(0), tmp_path / "c")
    other = save_pretrained(make_ghn(1), tmp_path / "d")
    hub.add_files("me/tampered", {CONFIG_NAME: (out / CONFIG_NAME).read_bytes(),
                                  WEIGHTS_NAME: (other / WEIGHTS_NAME).read_bytes()})
    with pytest.raises(GHNLoadError, match="checksum mismatch"):
        load_ghn("me/tampered", cache_dir=tmp_path / "cache")


def test_hub_offline(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub import constants

    ghn = make_ghn(6)
    publish(hub, tmp_path, "me/offline", ghn)
    cache = tmp_path / "cache"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(GHNLoadError, match="HF_HUB_OFFLINE") as info:
        load_ghn("me/offline", cache_dir=cache)
    assert "load_ghn('default')" in str(info.value) and "local checkpoint directory" in str(info.value)
    assert sum(hub.requests.values()) == 0

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    load_ghn("me/offline", cache_dir=cache)  # fills the cache
    n = sum(hub.requests.values())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert_same_weights(load_ghn("me/offline", cache_dir=cache), ghn)
    # the variable set after huggingface_hub was imported is honoured too
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_same_weights(load_ghn("me/offline", cache_dir=cache), ghn)
    assert sum(hub.requests.values()) == n  # no request while offline


def test_hub_unreachable_fails_fast(hub: FakeHub, tmp_path: Path):
    from huggingface_hub import constants

    dead = hub.endpoint
    hub.stop()  # nothing listens on the port any more: connection refused
    assert constants.ENDPOINT == dead
    t0 = time.perf_counter()
    with pytest.raises(GHNLoadError, match="could not be reached") as info:
        load_ghn("me/anything", cache_dir=tmp_path / "cache")
    # huggingface_hub alone retries a refused connection with backoff for about 23 s
    assert time.perf_counter() - t0 < 2.0
    assert "Connection refused" in str(info.value) or "cannot connect" in str(info.value)
    assert "load_ghn('default')" in str(info.value) and "weights=None" in str(info.value)


def test_hub_unreachable_uses_the_cache_at_once(hub: FakeHub, tmp_path: Path):
    ghn = make_ghn(7)
    publish(hub, tmp_path, "me/cached", ghn)
    cache = tmp_path / "cache"
    load_ghn("me/cached", cache_dir=cache)
    hub.stop()
    t0 = time.perf_counter()
    assert_same_weights(load_ghn("me/cached", cache_dir=cache), ghn)
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.parametrize("name", ["no_such_dir/ckpt", "runs.v2/final", "./ckpt", "runs/ghn/final", "ckpt/"])
def test_path_like_names_say_no_such_directory_without_asking_the_hub(hub: FakeHub, name: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="no such directory") as info:
        load_ghn(name)
    assert repr(name) in str(info.value) and "hf://" in str(info.value)
    assert sum(hub.requests.values()) == 0


def test_existing_folder_as_namespace_means_a_path(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ValueError, match="no such directory"):
        load_ghn("runs/final")  # a valid-looking repo id, but ./runs exists: a mistyped path
    assert sum(hub.requests.values()) == 0


def test_hf_prefix_forces_a_hub_lookup(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "me").mkdir()  # would make "me/model" read as a path
    ghn = make_ghn(8)
    publish(hub, tmp_path, "me/model", ghn)
    with pytest.raises(ValueError, match="no such directory"):
        load_ghn("me/model")
    got = load_ghn("hf://me/model", cache_dir=tmp_path / "cache")
    assert_same_weights(got, ghn)
    assert got.source_id.startswith("hf:me/model@")


# --------------------------------------------------------------------------- non-editable install


def _copy_source_tree(dst: Path) -> None:
    dst.mkdir()
    for name in ("setup.py", "setup.cfg", "README.md"):
        if (REPO_ROOT / name).is_file():
            shutil.copy(REPO_ROOT / name, dst / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("torch_qinit", "benchmarks"):
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, dst / name, ignore=ignore)
    (dst / "weights").mkdir()
    shutil.copy(REPO_ROOT / "weights" / "__init__.py", dst / "weights" / "__init__.py")


def test_wheel_ships_bundled_weights(tmp_path: Path):
    """Build a wheel of a copy of the tree (offline), unpack it as pip would, load the default GHN from it."""
    if not (REPO_ROOT / "torch_qinit" / "__init__.py").is_file():
        pytest.skip("torch_qinit/__init__.py does not exist yet, so the package cannot be built")
    src = tmp_path / "src"
    _copy_source_tree(src)
    ghn = make_ghn(7)
    save_pretrained(ghn, src / "weights" / "ghn-qat", dtype=torch.float16)
    save_pretrained(make_ghn(8, method="ghn"), src / "weights" / "ghn", dtype=torch.float16)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(dist), str(src)], check=True, capture_output=True, timeout=120)
    (wheel,) = dist.glob("torch_qinit-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        site = tmp_path / "site"
        zf.extractall(site)
    for sub in ("ghn-qat", "ghn"):
        for f in (WEIGHTS_NAME, CONFIG_NAME, MODEL_CARD_NAME):
            assert f"torch_qinit/weights/{sub}/{f}" in names
    assert "torch_qinit/hub/_hub.py" in names and "torch_qinit/data/fashion_mnist.py" in names
    assert not any(n.startswith("benchmarks/") for n in names)  # the benchmarks stay in the source tree

    code = ("import torch_qinit.hub as h; g = h.load_ghn(); "
            "print(h.bundled_weights_dir()); print(g.source_id); print(g.weights_sha256)")
    env = {k: v for k, v in os.environ.items() if k not in (WEIGHTS_DIR_ENV, "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    root, source, sha = run.stdout.split()
    assert Path(root) == site / "torch_qinit" / "weights"
    assert source == "bundled:ghn-qat"
    assert sha == cfg_sha(src / "weights" / "ghn-qat")
    bench = subprocess.run([sys.executable, "-m", "torch_qinit.cli.main", "bench"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert bench.returncode == 2 and "source repository" in bench.stderr, bench.stderr
