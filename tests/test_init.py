"""Classic initializers: statistics, registry, and apply_classic_init rules."""
import math

import pytest
import torch
from torch import nn

from torch_qinit import init as qinit
from torch_qinit.init import (
    INITIALIZERS,
    apply_classic_init,
    available_methods,
    get_initializer,
    glorot_normal_,
    glorot_uniform_,
    he_normal_,
    he_uniform_,
    normal_range_,
    orthogonal_,
    pytorch_default_,
    uniform_range_,
)

EXPECTED_NAMES = [
    "uniform_0.01", "uniform_0.05", "uniform_0.1",
    "normal_0.01", "normal_0.05", "normal_0.1",
    "glorot_uniform", "glorot_normal",
    "he_uniform", "he_normal", "he_uniform_fan_out", "he_normal_fan_out",
    "orthogonal", "pytorch_default",
]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def big(*shape: int) -> torch.Tensor:
    return torch.empty(*shape)


def assert_rel(value: float, target: float, tol: float = 0.05) -> None:
    assert abs(value - target) <= tol * target, (value, target)


# --------------------------------------------------------------- statistics
def test_he_normal_std_fan_in_and_fan_out():
    w = he_normal_(big(128, 64, 3, 3), generator=gen())
    assert_rel(w.std().item(), math.sqrt(2.0 / (64 * 9)))
    assert abs(w.mean().item()) < 0.05 * math.sqrt(2.0 / (64 * 9))
    w = he_normal_(big(128, 64, 3, 3), mode="fan_out", generator=gen())
    assert_rel(w.std().item(), math.sqrt(2.0 / (128 * 9)))


def test_he_uniform_bound_and_std():
    fan_in = 256
    w = he_uniform_(big(512, fan_in), generator=gen())
    bound = math.sqrt(6.0 / fan_in)
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.99 * bound
    assert_rel(w.std().item(), math.sqrt(2.0 / fan_in))
    w = he_uniform_(big(512, fan_in), mode="fan_out", nonlinearity="linear", generator=gen())
    assert_rel(w.std().item(), math.sqrt(1.0 / 512))


def test_glorot_normal_and_uniform():
    fi, fo = 300, 500
    w = glorot_normal_(big(fo, fi), generator=gen())
    assert_rel(w.std().item(), math.sqrt(2.0 / (fi + fo)))
    w = glorot_uniform_(big(fo, fi), generator=gen())
    a = math.sqrt(6.0 / (fi + fo))
    assert w.abs().max().item() <= a and w.abs().max().item() > 0.99 * a
    assert_rel(w.std().item(), math.sqrt(2.0 / (fi + fo)))
    w = glorot_normal_(big(fo, fi), gain=2.0, generator=gen())
    assert_rel(w.std().item(), 2.0 * math.sqrt(2.0 / (fi + fo)))


@pytest.mark.parametrize("bound", [0.01, 0.05, 0.1])
def test_uniform_range_bounded(bound):
    w = uniform_range_(big(256, 256), bound, generator=gen())
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.99 * bound
    assert_rel(w.std().item(), bound / math.sqrt(3.0))


@pytest.mark.parametrize("std", [0.01, 0.05, 0.1])
def test_normal_range_std(std):
    w = normal_range_(big(256, 256), std, generator=gen())
    assert_rel(w.std().item(), std)


@pytest.mark.parametrize("shape", [(16, 64), (64, 16), (32, 8, 3, 3)])
def test_orthogonal(shape):
    w = orthogonal_(big(*shape), generator=gen())
    m = w.reshape(shape[0], -1)
    if m.shape[0] <= m.shape[1]:
        gram = m @ m.t()
    else:
        gram = m.t() @ m
    torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-5, rtol=0)
    w = orthogonal_(big(16, 64), gain=3.0, generator=gen())
    torch.testing.assert_close(w @ w.t(), 9.0 * torch.eye(16), atol=1e-4, rtol=0)


def test_in_place_returns_tensor_and_no_grad():
    w = torch.zeros(8, 4, requires_grad=True)
    out = he_normal_(w, generator=gen())
    assert out is w
    assert w.grad_fn is None and w.requires_grad


@pytest.mark.parametrize("name", [n for n in EXPECTED_NAMES if n != "pytorch_default"])
def test_generator_reproducible(name):
    fn = get_initializer(name)
    a = fn(torch.empty(16, 8, 3, 3), generator=gen(7))
    b = fn(torch.empty(16, 8, 3, 3), generator=gen(7))
    c = fn(torch.empty(16, 8, 3, 3), generator=gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_fan_based_need_2d():
    for fn in (he_normal_, he_uniform_, glorot_normal_, glorot_uniform_, orthogonal_):
        with pytest.raises(ValueError):
            fn(torch.empty(10))
    with pytest.raises(ValueError, match="mode"):
        he_normal_(torch.empty(3, 3), mode="fan_avg")


def test_pytorch_default_reproducible_and_global_rng_untouched():
    net = nn.Sequential(nn.Linear(16, 32), nn.Linear(32, 4))
    state = torch.random.get_rng_state()
    pytorch_default_(net, generator=gen(3))
    a = [p.detach().clone() for p in net.parameters()]
    pytorch_default_(net, generator=gen(3))
    b = [p.detach().clone() for p in net.parameters()]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(torch.random.get_rng_state(), state)
    # Linear's default: |w| <= 1/sqrt(fan_in)
    assert net[0].weight.abs().max().item() <= 1 / math.sqrt(16)


# ------------------------------------------------------------------ registry
def test_registry_names():
    assert available_methods() == EXPECTED_NAMES
    assert list(INITIALIZERS) == EXPECTED_NAMES
    assert get_initializer("he_normal") is he_normal_
    assert set(qinit.__all__) >= {"apply_classic_init", "get_initializer", "available_methods"}


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as exc:
        get_initializer("kaiming")
    msg = str(exc.value)
    assert "kaiming" in msg and "he_normal" in msg and "pytorch_default" in msg
    with pytest.raises(ValueError):
        apply_classic_init(nn.Linear(2, 2), "nope")


# ------------------------------------------------------- apply_classic_init
def small_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, groups=4),
        nn.GroupNorm(4, 16),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.LayerNorm(16),
        nn.Linear(16, 10),
    )
    # non-trivial BN state that must survive
    net.train()
    with torch.no_grad():
        net(torch.randn(8, 3, 8, 8) * 3 + 1)
    return net


@pytest.mark.parametrize("method", EXPECTED_NAMES)
def test_apply_rules(method):
    net = small_net()
    net.eval()
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    ids = {n: id(p) for n, p in net.named_parameters()}
    for p in net.parameters():  # make sure every rule actually writes something
        with torch.no_grad():
            p.fill_(0.123)
    report = apply_classic_init(net, method, generator=gen())
    assert set(report) == set(ids)
    assert {n: id(p) for n, p in net.named_parameters()} == ids
    assert not net.training
    for k, v in net.named_buffers():
        assert torch.equal(v, buffers[k]), k
    for norm in ("1", "4", "7"):
        assert torch.equal(getattr(net, norm).weight, torch.ones(16))
        assert torch.equal(getattr(net, norm).bias, torch.zeros(16))
    for layer in ("0", "3", "8"):
        w = getattr(net, layer).weight
        assert not torch.all(w == 0.123)
        assert w.std() > 0
        if method != "pytorch_default":
            assert torch.equal(getattr(net, layer).bias, torch.zeros_like(getattr(net, layer).bias))
            assert report[f"{layer}.weight"] == method
            assert report[f"{layer}.bias"] == "zeros"
    if method != "pytorch_default":
        assert report["1.weight"] == "ones" and report["1.bias"] == "zeros"


def test_apply_he_normal_scale_per_layer():
    net = nn.Sequential(nn.Conv2d(64, 128, 3), nn.Linear(512, 256))
    apply_classic_init(net, "he_normal", generator=gen())
    assert_rel(net[0].weight.std().item(), math.sqrt(2 / (64 * 9)))
    assert_rel(net[1].weight.std().item(), math.sqrt(2 / 512))


def test_apply_reproducible_with_generator():
    a, b = small_net(), small_net()
    apply_classic_init(a, "glorot_uniform", generator=gen(5))
    apply_classic_init(b, "glorot_uniform", generator=gen(5))
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


def test_apply_keeps_train_mode_and_tied_weights():
    emb = nn.Embedding(10, 8)
    head = nn.Linear(8, 10, bias=False)
    head.weight = emb.weight  # tied
    net = nn.Sequential(emb, head).train()
    report = apply_classic_init(net, "orthogonal", generator=gen())
    assert net.training
    assert net[1].weight is net[0].weight
    assert report["0.weight"] == report["1.weight"] == "orthogonal"


def test_apply_untouched_on_failure(monkeypatch):
    net = small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    calls = {"n": 0}

    def flaky(tensor, generator=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return tensor.fill_(7.0)

    monkeypatch.setitem(INITIALIZERS, "he_normal", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        apply_classic_init(net, "he_normal")
    assert calls["n"] == 2
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_apply_bad_inputs():
    with pytest.raises(TypeError):
        apply_classic_init("not a model", "he_normal")
    with pytest.raises(ValueError, match="no parameters"):
        apply_classic_init(nn.ReLU(), "he_normal")
    with pytest.raises(ValueError, match="lazy"):
        apply_classic_init(nn.LazyLinear(4), "he_normal")


def test_apply_float64_and_prelu():
    net = nn.Sequential(nn.Linear(4, 4), nn.PReLU()).double()
    report = apply_classic_init(net, "he_uniform", generator=gen())
    assert net[0].weight.dtype == torch.float64
    assert report["1.weight"].startswith("unchanged")
    assert torch.equal(net[1].weight, torch.full((1,), 0.25, dtype=torch.float64))


def test_classic_values_computes_without_writing():
    net = small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    values = qinit.classic_values(net, "he_normal", generator=gen())
    assert set(values) == {id(p) for p in net.parameters()}
    value, desc = values[id(net[0].weight)]
    assert desc == "he_normal" and value.shape == net[0].weight.shape
    assert values[id(net[1].weight)][1] == "ones"
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


def test_distinct_parameters_keeps_the_first_name_of_a_tied_parameter():
    """The one tied-parameter rule the classic inits, initialize_ and the write share."""
    from torch_qinit.modules import distinct_parameters, owned_parameters, write_values

    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    b.weight = a.weight  # tied: one parameter under "0.weight" and "1.weight"
    owned = owned_parameters(nn.Sequential(a, b))
    assert [name for name, *_ in owned] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert [name for name, *_ in distinct_parameters(owned)] == ["0.weight", "0.bias", "1.bias"]
    assert write_values(owned, {id(a.weight): torch.ones(4, 4)}) == 1 and torch.equal(b.weight, torch.ones(4, 4))
