"""initialize_: atomic, identity-preserving, honest about what it could not serve."""
from pathlib import Path

import pytest
import torch
from torch import nn

import torch_qinit
from torch_qinit.ghn import GHN, GHNConfig
from torch_qinit.hub import save_pretrained
from torch_qinit.space import build_arch


@pytest.fixture(scope="module")
def ghn_dir(tmp_path_factory):
    torch.manual_seed(0)
    ghn = GHN(GHNConfig(hidden=32, layers=1, heads=4, decoder_rank=8, bits=(2, 4, 8)))
    d = tmp_path_factory.mktemp("ghn")
    save_pretrained(ghn, d)
    return str(d)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_untouched(model, before):
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_predicts_every_parameter_of_a_space_net(ghn_dir):
    model = build_arch("test", 0)
    ids = {n: id(p) for n, p in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    model.eval()
    report = torch_qinit.initialize_(model, bits=4, weights=ghn_dir)
    assert report.num_fallback == 0 and report.num_predicted == len(ids)
    assert {n: id(p) for n, p in model.named_parameters()} == ids
    assert not model.training
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k
    assert report.capture_method == "fx" and report.weights_sha256
    assert "predicted by the GHN" in str(report)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_preserved(ghn_dir, dtype):
    model = build_arch("test", 1).to(dtype)
    torch_qinit.initialize_(model, bits=2, weights=ghn_dir)
    assert all(p.dtype == dtype for p in model.parameters())
    assert all(torch.isfinite(p.float()).all() for p in model.parameters())


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(16, 16)
        self.dec = nn.Linear(16, 16)
        self.dec.weight = self.enc.weight

    def forward(self, x):
        return self.dec(torch.relu(self.enc(x)))


def test_tied_weights_stay_tied(ghn_dir):
    model = Tied()
    report = torch_qinit.initialize_(model, bits=4, weights=ghn_dir)
    assert model.dec.weight is model.enc.weight
    assert report.sources["dec.weight"] == "ghn"


class WithEmbedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, idx):
        return self.fc(self.emb(idx).mean(1))


def test_unservable_parameters_fall_back_and_strict_refuses(ghn_dir):
    model = WithEmbedding()
    report = torch_qinit.initialize_(model, bits=4, weights=ghn_dir)
    assert list(report.fallback) == ["emb.weight"] and report.sources["fc.weight"] == "ghn"
    before = _state(model)
    with pytest.raises(ValueError, match="strict"):
        torch_qinit.initialize_(model, bits=4, weights=ghn_dir, strict=True)
    _assert_untouched(model, before)


def test_mixed_precision_dict(ghn_dir):
    model = build_arch("test", 2)
    report = torch_qinit.initialize_(model, bits={"stem.0": 8, "classifier": 2}, weights=ghn_dir)
    assert report.bits == {"stem.0": 8, "classifier": 2}


def test_unseen_bits_are_mapped_with_a_warning(ghn_dir):
    with pytest.warns(UserWarning, match="nearest trained width"):
        report = torch_qinit.initialize_(build_arch("test", 3), bits=3, weights=ghn_dir)
    assert "nearest" in report.ghn_bits_note


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"bits": 1}, ValueError, "2..8"),
    ({"bits": 9}, ValueError, "2..8"),
    ({"bits": 4.0}, TypeError, "int"),
    ({"bits": {"nope": 4}}, ValueError, "does not have"),
    ({"method": "xavier_magic"}, ValueError, "unknown method"),
    ({"weights": "no-such-checkpoint"}, ValueError, "not a bundled checkpoint"),
])
def test_bad_inputs_leave_the_model_untouched(ghn_dir, kwargs, exc, match):
    model = build_arch("test", 4)
    before = _state(model)
    kwargs = {"weights": ghn_dir, **kwargs}
    with pytest.raises(exc, match=match):
        torch_qinit.initialize_(model, **kwargs)
    _assert_untouched(model, before)


def test_non_module_and_parameterless_models():
    with pytest.raises(TypeError, match="nn.Module"):
        torch_qinit.initialize_("resnet")
    with pytest.raises(ValueError, match="no parameters"):
        torch_qinit.initialize_(nn.ReLU())


def test_nothing_servable_is_an_error(ghn_dir):
    model = nn.Sequential(nn.Embedding(5, 4))
    before = _state(model)
    with pytest.raises(ValueError, match="none of"):
        torch_qinit.initialize_(model, weights=ghn_dir)
    _assert_untouched(model, before)


def test_classic_method_through_the_same_call():
    model = build_arch("test", 5)
    report = torch_qinit.initialize_(model, method="he_normal", generator=torch.Generator().manual_seed(0))
    assert report.method == "he_normal" and report.num_predicted == 0
    conv = model.stem[0].weight
    assert abs(conv.std().item() - (2 / conv[0].numel()) ** 0.5) < 0.3 * (2 / conv[0].numel()) ** 0.5


def test_corrupt_checkpoint_leaves_model_untouched(ghn_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("config.json", "README.md"):
        (bad / f).write_bytes((Path(ghn_dir) / f).read_bytes())
    data = (Path(ghn_dir) / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    model = build_arch("test", 6)
    before = _state(model)
    with pytest.raises(OSError):
        torch_qinit.initialize_(model, weights=str(bad))
    _assert_untouched(model, before)


class TiedToEmbedding(nn.Module):
    """An unservable embedding sharing its weight with a servable linear layer."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.out = nn.Linear(8, 10)
        self.out.weight = self.emb.weight

    def forward(self, idx):
        return self.out(self.emb(idx).mean(1))


def test_tied_weight_that_fell_back_is_reported_as_fallback_under_every_name(ghn_dir):
    model = TiedToEmbedding()
    report = torch_qinit.initialize_(model, bits=4, weights=ghn_dir)
    assert model.out.weight is model.emb.weight
    assert report.sources["out.bias"] == "ghn"
    assert report.sources["emb.weight"] != "ghn" and report.sources["out.weight"] != "ghn"
    assert {"emb.weight", "out.weight"} <= set(report.fallback)
