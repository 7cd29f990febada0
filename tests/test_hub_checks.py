"""The Hub module's checks without a server: config validation at its boundaries, the key/shape mismatch message,
which names read as paths or repo ids, environment flags, the generated model card and what is saved."""
from __future__ import annotations

import math

import pytest
import torch

from torch_qinit.ghn.config import GHNConfig
from torch_qinit.ghn.model import GHN
from torch_qinit.hub import GHNLoadError
from torch_qinit.hub._hub import (
    _check_keys,
    _hub_repo_id,
    _is_true,
    _path_like,
    _state_for_saving,
    default_model_card,
    ghn_fingerprint,
    validate_config,
)
from torch_qinit.hub.push import _check_repo_id


def cfg(**kw) -> GHNConfig:
    base = dict(hidden=16, layers=1, heads=2, block_out=8, block_in=8, block_kernel=3, decoder_rank=4)
    base.update(kw)
    return GHNConfig(**base)


# ------------------------------------------------------------------ validate_config
@pytest.mark.parametrize("kw", [dict(layers=0), dict(hidden=1, heads=1), dict(block_kernel=1), dict(bits=(2, 8)),
                                dict(bits=()), dict(decoder_version=1), dict(input_shape=(3, 1, 1)),
                                dict(normalization={}), dict(normalization={"mean": 1, "std": 0.5}),
                                dict(method="ghn"), dict(num_classes=1)])
def test_valid_configs_at_the_boundaries(kw):
    validate_config(cfg(**kw))


@pytest.mark.parametrize("kw, message", [
    (dict(layers=-1), "field 'layers' must be an integer >= 0, got -1"),
    (dict(hidden=0), "field 'hidden' must be an integer >= 1, got 0"),
    (dict(num_classes=0), "field 'num_classes' must be an integer >= 1, got 0"),
    (dict(block_in=2.0), "field 'block_in' must be an integer >= 1, got 2.0"),
    (dict(heads=True), "field 'heads' must be an integer >= 1, got True"),
    (dict(decoder_version=0), "field 'decoder_version' must be an integer >= 1, got 0"),
    (dict(hidden=16, heads=3), "field 'hidden' (16) must be divisible by field 'heads' (3)"),
    (dict(method="GHN"), "field 'method' must be 'ghn' or 'ghn-qat', got 'GHN'"),
    (dict(bits=(2, 9)), "field 'bits' must list integers in 2..8, got [2, 9]"),
    (dict(bits=(1,)), "field 'bits' must list integers in 2..8, got [1]"),
    (dict(bits=(True,)), "field 'bits' must list integers in 2..8, got [True]"),
    (dict(bits=(4.0,)), "field 'bits' must list integers in 2..8, got [4.0]"),
    (dict(input_shape=()), "field 'input_shape' must list positive integers (C, H, W), got []"),
    (dict(input_shape=(1, True, 2)), "field 'input_shape' must list positive integers (C, H, W), got [1, True, 2]"),
    (dict(input_shape=(1, 2.0)), "field 'input_shape' must list positive integers (C, H, W), got [1, 2.0]"),
    (dict(normalization={"mean": math.inf}), "field 'normalization' must map names to finite numbers, got "
                                             "{'mean': inf}"),
    (dict(normalization={"mean": True}), "field 'normalization' must map names to finite numbers, got "
                                         "{'mean': True}"),
    (dict(normalization=[0.5]), "field 'normalization' must map names to finite numbers, got [0.5]"),
    (dict(training=[]), "field 'training' must be an object, got list"),
    (dict(version=1), "field 'version' must be a string, got 1"),
])
def test_invalid_configs_name_the_field(kw, message):
    with pytest.raises(ValueError) as info:
        validate_config(cfg(**kw))
    assert str(info.value) == message


# ------------------------------------------------------------------ state dict keys
def test_check_keys_lists_what_differs():
    t = torch.zeros
    expected = {"a": t(2), "b": t(3), "c": t(4, 4)}
    _check_keys(expected, {"a": t(2), "b": t(3), "c": t(4, 4)}, "src")  # all match: no error
    with pytest.raises(GHNLoadError) as info:
        _check_keys(expected, {"a": t(2), "c": t(4, 5), "z": t(1)}, "local:/x")
    assert str(info.value) == ("model.safetensors of local:/x does not match its config.json: missing keys: b; "
                               "unexpected keys: z; shape mismatches: c: checkpoint (4, 5) vs model (4, 4)")
    many = {f"k{i:02d}": t(1) for i in range(10)}
    with pytest.raises(GHNLoadError) as info:
        _check_keys(many, {}, "s")
    assert str(info.value).endswith("missing keys: k00, k01, k02, k03, k04, k05, k06, k07, ... (10 in all)")
    with pytest.raises(GHNLoadError) as info:
        _check_keys({}, {f"u{i}": t(1) for i in range(8)}, "s")
    assert str(info.value).endswith("unexpected keys: u0, u1, u2, u3, u4, u5, u6, u7")  # 8 fit, no count
    with pytest.raises(GHNLoadError) as info:
        _check_keys({}, {f"u{i}": t(1) for i in range(9)}, "s")
    assert str(info.value).endswith("unexpected keys: u0, u1, u2, u3, u4, u5, u6, u7, ... (9 in all)")


# ------------------------------------------------------------------ names
@pytest.mark.parametrize("name, path_like", [
    ("./ckpt", True), ("/abs/ckpt", True), ("~/ckpt", True), ("ckpt/", True), ("a\\b", True),
    ("a/b/c", True), ("plain", False), ("my-org/model", False), ("MyOrg2/model", False),
    ("no_such/ckpt", True), ("runs.v2/final", True), ("-org/x", True), ("org-/x", True), ("a--b/x", True),
    (".ckpt", True), ("~ckpt", True),
])
def test_path_like_names(name, path_like, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _path_like(name) is path_like


def test_existing_namespace_folder_reads_as_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _path_like("org/model") is False
    (tmp_path / "org").mkdir()
    assert _path_like("org/model") is True


def test_hub_repo_ids():
    assert _hub_repo_id("org/model") == "org/model"
    for bad in ("model", "a/b/c", "org/bad name", "org/", "org/..x"):
        assert _hub_repo_id(bad) is None, bad
    assert _check_repo_id("org/model") == "org/model"
    with pytest.raises(ValueError, match=r"^repo_id must be 'namespace/name' \(e\.g\. 'your-org/ghn-qat-fmnist'\), "
                                         r"got 'model'$"):
        _check_repo_id("model")
    with pytest.raises(ValueError, match=r"^repo_id must be 'namespace/name'"):
        _check_repo_id(None)
    with pytest.raises(ValueError, match=r"^invalid Hub repo id 'org/bad name': "):
        _check_repo_id("org/bad name")


@pytest.mark.parametrize("value, expected", [
    ("1", True), ("ON", True), ("yes", True), (" true ", True), ("True", True),
    ("0", False), ("", False), (None, False), ("off", False), ("2", False),
])
def test_env_flags(value, expected):
    assert _is_true(value) is expected


# ------------------------------------------------------------------ saving
def test_state_for_saving_casts_only_floating_tensors():
    torch.manual_seed(0)
    ghn = GHN(cfg())
    ghn.register_buffer("counter", torch.arange(3))
    state = _state_for_saving(ghn, torch.float16)
    assert state["op_embed.weight"].dtype == torch.float16 and state["counter"].dtype == torch.int64
    torch.testing.assert_close(state["op_embed.weight"].float(), ghn.op_embed.weight.detach(), atol=1e-2, rtol=1e-3)
    kept = _state_for_saving(ghn, None)
    assert kept["op_embed.weight"].dtype == torch.float32
    assert torch.equal(kept["op_embed.weight"], ghn.op_embed.weight)
    assert kept["op_embed.weight"].data_ptr() != ghn.op_embed.weight.data_ptr()  # a copy, not the live tensor
    assert all(t.is_contiguous() for t in kept.values())


def test_fingerprint_of_an_unsaved_ghn_follows_its_weights():
    torch.manual_seed(0)
    a = GHN(cfg())
    source, sha = ghn_fingerprint(a)
    assert source == "unsaved" and len(sha) == 64 and ghn_fingerprint(a) == (source, sha)
    with torch.no_grad():
        a.op_embed.weight[0, 0] += 1
    assert ghn_fingerprint(a)[1] != sha
    a.source_id = "local:/x"  # a source without a checksum is not enough
    assert ghn_fingerprint(a)[0] == "unsaved"
    a.weights_sha256 = "f" * 64
    assert ghn_fingerprint(a) == ("local:/x", "f" * 64)
    b = GHN(cfg())
    sha_b = ghn_fingerprint(b)[1]
    assert ghn_fingerprint(b.double())[1] == sha_b  # hashed in float32 whatever the GHN's dtype


def test_model_card_records_the_checkpoint():
    c = cfg(method="ghn", bits=(2, 4), num_classes=7, input_shape=(1, 28, 28),
            normalization={"mean": 0.25, "std": 0.5},
            training={"command": "torch-qinit train", "steps": 10, "lr": 0.001, "design_space": "tiny CNNs"})
    card = default_model_card(c, num_parameters=1234567, weights_sha256="ab" * 32, weights_dtype="float16")
    lines = card.splitlines()
    from torch_qinit.data import dataset_for_input
    assert lines[:12] == ["---", "library_name: torch_qinit", "license: mit", "tags:", "- quantization",
                          "- quantization-aware-training", "- graph-hypernetwork", "- ghn", "datasets:",
                          f"- {dataset_for_input((1, 28, 28)).name}", "---", ""]  # the Hub metadata
    assert "# GHN (float) checkpoint for torch_qinit" in lines
    assert "- Normalization: mean 0.2500, std 0.5000 (per channel where numbered; apply the same to your inputs)." \
        in lines
    assert "- Design space: tiny CNNs" in lines
    assert "- Bits seen in training: 2, 4 (weights and activations, per layer)." in lines
    assert "- hidden 16, layers 1, heads 2" in lines and "- decoder block (8, 8, 3, 3), rank 4" in lines
    assert "- 1,234,567 parameters" in lines
    assert "Command: `torch-qinit train`" in lines
    i = lines.index("Command: `torch-qinit train`")
    assert lines[i + 1:i + 3] == ["- lr: 0.001", "- steps: 10"]  # the rest of the training record, sorted
    assert "- `model.safetensors` (float16)" in lines and f"- sha256 `{'ab' * 32}` (checked on load)" in lines
    assert "7 classes." in card and "input shape (1, 28, 28)" in card
    bare = default_model_card(cfg(normalization={}, training={})).splitlines()
    assert "# GHN-QAT checkpoint for torch_qinit" in bare and "Command: not recorded." in bare
    assert "- Design space: CNNs and MLPs sampled by `torch_qinit.space`: plain conv, conv+BN, depthwise-separable " \
           "(with and without BN), residual, inverted-bottleneck, dense and fire blocks, squeeze-excite, 1-3 Linear " \
           "heads; widths 8-512, kernels 1-7, BN/GroupNorm/LayerNorm, seven activations." in bare
    assert "- Normalization: not recorded (per channel where numbered; apply the same to your inputs)." in bare
    assert "- `model.safetensors`" in bare and not any("parameters" in x for x in bare if x.startswith("- 1"))
    assert not any(x.startswith("- sha256") for x in bare)
