"""BatchNorm folding: the folded weight and bias by formula, and which conv/BN pairs may fold (and which not)."""
import pytest
import torch
from torch import nn

from torch_qinit.quant import fold_bn, fold_conv_bn_


def _randomize_bn(bn: nn.modules.batchnorm._BatchNorm, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.running_mean.copy_(torch.rand(bn.num_features, generator=g) * 2 - 1)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) * 3 + 0.2)
        if bn.weight is not None:
            bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
            bn.bias.copy_(torch.rand(bn.num_features, generator=g) * 2 - 1)


def test_fold_conv_bn_formula():
    conv = nn.Conv2d(2, 3, 1)
    bn = nn.BatchNorm2d(3, eps=0.1)
    _randomize_bn(bn)
    w, b = conv.weight.detach().clone(), conv.bias.detach().clone()
    fold_conv_bn_(conv, bn)
    a = bn.weight / torch.sqrt(bn.running_var + 0.1)
    torch.testing.assert_close(conv.weight, w * a.view(3, 1, 1, 1))
    torch.testing.assert_close(conv.bias, (b - bn.running_mean) * a + bn.bias)
    assert conv.weight.requires_grad and conv.bias.requires_grad


def test_fold_conv_bn_without_bias_or_affine():
    conv = nn.Conv1d(2, 3, 1, bias=False)
    bn = nn.BatchNorm1d(3, affine=False, eps=0.0)
    _randomize_bn(bn)
    w = conv.weight.detach().clone()
    conv.weight.requires_grad_(False)
    fold_conv_bn_(conv, bn)
    a = 1 / torch.sqrt(bn.running_var)  # gamma 1, beta 0
    torch.testing.assert_close(conv.weight, w * a.view(3, 1, 1))
    torch.testing.assert_close(conv.bias, -bn.running_mean * a)  # a bias is added
    assert not conv.weight.requires_grad and not conv.bias.requires_grad  # follows the weight


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_fold_bn_every_spatial_rank_matches_eval(dims):
    conv_t = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    bn_t = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
    net = nn.Sequential(conv_t(2, 4, 3, padding=1), bn_t(4), nn.ReLU())
    _randomize_bn(net[1])
    net.eval()
    folded = fold_bn(net)
    assert isinstance(folded[1], nn.Identity)
    x = torch.randn((2, 2) + (5,) * dims)
    torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)


def test_fold_bn_leaves_unfoldable_pairs():
    # a BN without running stats, one with the wrong number of features after a conv, a conv followed
    # by a BN of another rank, and a linear layer before a BN: none of them folds
    no_stats = nn.Sequential(nn.Conv2d(2, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))
    assert isinstance(fold_bn(no_stats)[1], nn.BatchNorm2d)

    class Mismatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 1)
            self.bn = nn.BatchNorm2d(4)
            self.conv1d = nn.Conv1d(2, 2, 1)
            self.bn2d = nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x))

    m = Mismatch()
    m.bn.num_features = 5  # running stats are there, but the count does not match the conv
    folded = fold_bn(m)
    assert isinstance(folded.bn, nn.BatchNorm2d)
    lin = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    assert isinstance(fold_bn(lin)[1], nn.BatchNorm1d)


class _Twice(nn.Module):
    """The same conv (or BN) called twice: folding it for one call would change the other."""

    def __init__(self, share_bn: bool):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.bn = nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2, 2, 1)
        self.share_bn = share_bn

    def forward(self, x):
        y = self.bn(self.conv(x))
        if self.share_bn:
            return self.bn(self.conv2(y))
        return self.conv(y)


@pytest.mark.parametrize("share_bn", [False, True])
def test_fold_bn_skips_modules_called_twice(share_bn):
    net = _Twice(share_bn).eval()
    _randomize_bn(net.bn)
    folded = fold_bn(net)
    assert isinstance(folded.bn, nn.BatchNorm2d)
    x = torch.randn(1, 2, 3, 3)
    torch.testing.assert_close(folded(x), net(x))


class _DynamicAct(nn.Module):
    def forward(self, x):
        return x.relu() if x.sum() > 0 else x


def test_fold_bn_fallback_folds_adjacent_pairs_of_a_top_level_sequential():
    net = nn.Sequential(nn.Conv2d(2, 4, 1), nn.BatchNorm2d(4), _DynamicAct(),
                        nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))).eval()
    _randomize_bn(net[1])
    _randomize_bn(net[3][1], seed=1)
    with pytest.warns(UserWarning, match=r"^fold_bn: torch\.fx tracing failed \(TraceError: .*\); folding only "
                                         r"conv/BatchNorm pairs adjacent inside nn\.Sequential$"):
        folded = fold_bn(net)
    assert isinstance(folded[1], nn.Identity) and isinstance(folded[3][1], nn.Identity)
    x = torch.randn(2, 2, 3, 3)
    torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)


def test_fold_bn_rejects_non_modules():
    with pytest.raises(TypeError, match="fold_bn expects an nn.Module, got str"):
        fold_bn("net")


def test_fold_bn_traces_into_nested_containers():
    net = nn.Sequential(nn.Sequential(nn.Conv2d(2, 4, 1), nn.BatchNorm2d(4)), nn.ReLU()).eval()
    _randomize_bn(net[0][1])
    folded = fold_bn(net)
    assert isinstance(folded[0][1], nn.Identity)
    x = torch.randn(2, 2, 3, 3)
    torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)


class _FunctionalBetween(nn.Module):
    """conv1 feeds a function (not a BN), then a foldable conv2 -> bn2 pair follows."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 1)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn2(self.conv2(torch.relu(self.conv1(x))))


def test_fold_bn_keeps_looking_past_unfoldable_layers():
    net = _FunctionalBetween().eval()
    _randomize_bn(net.bn2)
    folded = fold_bn(net)
    assert isinstance(folded.bn2, nn.Identity)
    x = torch.randn(2, 2, 3, 3)
    torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)
