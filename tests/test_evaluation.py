"""Zero-shot evaluation protocol on a tiny synthetic dataset."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torch_qinit.evaluation import accuracy, evaluate, recalibrate_bn


def data(n: int = 256, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(9))
    y = torch.randint(0, 3, (n,), generator=g)
    x = protos[y] + 0.3 * torch.randn(n, 1, 6, 6, generator=g) + 2.0  # offset: BN stats matter
    return TensorDataset(x, y)


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )


@pytest.fixture(scope="module")
def trained():
    model = net()
    loader = DataLoader(data(), batch_size=32, shuffle=False)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(3):
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def loaders():
    return (
        DataLoader(data(128, seed=1), batch_size=32),
        DataLoader(data(128, seed=2), batch_size=32),
    )


@pytest.mark.parametrize("bits", [None, 8, 4, 2, {"0": 8, "3": 2}])
def test_evaluate_range_and_model_untouched(trained, bits):
    test_loader, calib_loader = loaders()
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    modes = [m.training for m in trained.modules()]
    acc = evaluate(trained, bits, test_loader, calib_loader=calib_loader, recal_batches=4, calib_batches=2)
    assert isinstance(acc, float) and 0.0 <= acc <= 1.0
    if bits in (None, 8):
        assert acc > 0.9  # a trained net keeps its accuracy in float and at 8 bits (chance: 1/3)
    assert trained.state_dict().keys() == before.keys()
    for k, v in trained.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert [m.training for m in trained.modules()] == modes
    assert type(trained[0]) is nn.Conv2d


def test_evaluate_trained_beats_chance(trained):
    test_loader, calib_loader = loaders()
    assert evaluate(trained, None, test_loader, calib_loader=calib_loader) > 0.9
    assert evaluate(trained, 8, test_loader, calib_loader=calib_loader) > 0.9


def test_evaluate_bad_inputs(trained):
    test_loader, _ = loaders()
    with pytest.raises(TypeError):
        evaluate("model", 4, test_loader)
    with pytest.raises(ValueError, match="got 1"):
        evaluate(trained, 1, test_loader)
    with pytest.raises(ValueError, match="no samples"):
        evaluate(trained, None, [], recal_batches=0)


def test_recalibrate_bn_cumulative_average():
    model = net().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.3
    batches = [torch.randn(16, 1, 6, 6) * 2 + 5 for _ in range(3)]
    recalibrate_bn(model, batches, num_batches=2)
    bn = model[1]
    assert not model.training and bn.momentum == 0.3
    assert int(bn.num_batches_tracked) == 2
    with torch.no_grad():
        means = [model[0](b).mean(dim=(0, 2, 3)) for b in batches[:2]]
    torch.testing.assert_close(bn.running_mean, (means[0] + means[1]) / 2, atol=1e-5, rtol=1e-5)
    assert all(p.grad is None for p in model.parameters())


def test_accuracy_helper():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1])
    assert accuracy(model, [(x, y)]) == 0.75


def test_resolve_device_checks_names_against_this_machine():
    from torch_qinit.modules import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device name"):
        resolve_device("gpu0")
    n = torch.cuda.device_count()
    with pytest.raises(ValueError, match="CUDA device"):  # no CUDA here, or an index past the last GPU
        resolve_device(f"cuda:{n}" if n else "cuda")
