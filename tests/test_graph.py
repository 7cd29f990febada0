"""Tests for torch_qinit.graph.capture on small hand-written architectures."""
from __future__ import annotations

import logging
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torch_qinit.graph import OP_KINDS, SERVABLE_OPS, ArchGraph, Node, capture


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _snapshot(model: nn.Module):
    state = {k: v if isinstance(v, nn.parameter.UninitializedTensorMixin) else v.detach().clone()
             for k, v in model.state_dict(keep_vars=True).items()}
    flags = [m.training for m in model.modules()]
    attrs = [sorted(vars(m)) for m in model.modules()]
    hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    return state, flags, attrs, hooks


def _check(model: nn.Module, example_input=None, method: str | None = "fx") -> ArchGraph:
    """Capture, then assert the model is untouched and the graph well formed."""
    before = _snapshot(model)
    params_before = {n: p for n, p in model.named_parameters()}
    g = capture(model, example_input)
    after = _snapshot(model)
    assert before[0].keys() == after[0].keys()
    for k, v in before[0].items():
        if isinstance(v, nn.parameter.UninitializedTensorMixin):
            assert isinstance(after[0][k], nn.parameter.UninitializedTensorMixin), k
        else:
            assert torch.equal(v, after[0][k]), k
    assert before[1:] == after[1:]
    assert {n: p for n, p in model.named_parameters()} == params_before  # same objects

    assert isinstance(g, ArchGraph)
    if method is not None:
        assert g.method == method
    assert g.nodes[0].op == "input"
    assert g.nodes[-1].op == "output"
    assert [n.op for n in g.nodes].count("output") == 1
    assert all(0 <= s < d < len(g) for s, d in g.edges), "edges must follow topological order"
    assert len(set(g.edges)) == len(g.edges)
    assert all(n.op in OP_KINDS for n in g.nodes)
    assert g.distances().shape == (len(g), len(g))
    assert g.op_ids().shape == (len(g),)
    assert g.shape_features().shape == (len(g), 5)
    return g


def _ops(g: ArchGraph) -> list[str]:
    return [n.op for n in g.nodes]


def _preds(g: ArchGraph, i: int) -> list[int]:
    return sorted(s for s, d in g.edges if d == i)


def _full_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def _chain(g: ArchGraph) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(len(g) - 1)]


# --------------------------------------------------------------------------- #
# architectures
# --------------------------------------------------------------------------- #
class Residual(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(x + y)


class ConcatNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


class FunctionalNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv(x))
        y = y.mean((2, 3))
        y = torch.flatten(y, 1)
        return self.fc(y.view(y.size(0), -1))


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.pos = nn.Conv2d(4, 4, 1)
        self.neg = nn.Conv2d(4, 4, 1)
        self.drop = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        if x.sum() > 0:
            y = self.pos(y)
        else:
            y = self.neg(y)
        y = self.drop(y)
        return self.fc(torch.flatten(self.pool(y), 1))


class Scale(nn.Module):
    """An unknown layer type holding its own parameter."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class LayerScaleBlock(nn.Module):
    """A user block with a direct parameter next to parameterized children."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.layer_scale = nn.Parameter(torch.full((c,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layer_scale.view(1, -1, 1, 1) * self.conv(x)


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 layout (torchvision's), narrow widths to keep the test fast."""

    def __init__(self, width: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.conv1 = nn.Conv2d(3, w[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = w[0]
        for i, c in enumerate(w):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, c, stride), BasicBlock(c, c, 1)))
            cin = c
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(w[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# --------------------------------------------------------------------------- #
# tests
# --------------------------------------------------------------------------- #
def test_op_tables_cover_what_capture_emits():
    """Every op a captured space net holds is a known kind, and the servable ops are known kinds."""
    from torch_qinit.space import build_arch

    assert set(SERVABLE_OPS) <= set(OP_KINDS)
    ops = {n.op for i in range(5) for n in capture(build_arch("test", i)).nodes}
    assert ops <= set(OP_KINDS) and {"input", "output", "conv", "linear"} <= ops
    assert Node("conv", "c").params is not Node("conv", "d").params  # no shared mutable default


def test_sequential_cnn():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(8, 16, 5), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, 10),
    )
    g = _check(model)
    assert _ops(g) == ["input", "conv", "batch_norm", "relu", "max_pool", "conv", "relu6",
                       "global_pool", "flatten", "linear", "output"]
    assert g.edges == _chain(g)  # dropout bypassed
    assert g.param_shapes() == _full_shapes(model)
    conv = g.nodes[1]
    assert conv.name == "0" and conv.params == {"weight": (8, 3, 3, 3), "bias": (8,)}
    assert conv.attrs == {"kernel": 3, "stride": 2, "groups": 1, "padding": 1}
    assert g.nodes[5].attrs["kernel"] == 5
    assert all(n.servable for n in g.nodes if n.params)


def test_residual_add_has_two_predecessors():
    model = Residual()
    g = _check(model)
    assert _ops(g) == ["input", "conv", "batch_norm", "relu", "conv", "batch_norm", "add",
                       "relu", "output"]
    add = _ops(g).index("add")
    assert _preds(g, add) == [0, 5]  # the skip connection and bn2
    # the shared ReLU module is called twice: two nodes, one name
    assert [n.name for n in g.nodes if n.op == "relu"] == ["relu", "relu"]
    assert g.param_shapes() == _full_shapes(model)


def test_concat_branch():
    model = ConcatNet()
    g = _check(model)
    assert _ops(g) == ["input", "conv", "conv", "concat", "conv", "output"]
    cat = _ops(g).index("concat")
    assert _preds(g, cat) == [1, 2]
    assert _preds(g, 1) == [0] and _preds(g, 2) == [0]
    assert g.param_shapes() == _full_shapes(model)


def test_functional_ops():
    model = FunctionalNet()
    g = _check(model)
    # y.size(0) is bookkeeping; y.view(...) is a flatten like torch.flatten
    assert _ops(g) == ["input", "conv", "relu", "global_pool", "flatten", "flatten", "linear",
                       "output"]
    assert g.edges == _chain(g)
    assert g.nodes[1].attrs["stride"] == 2
    assert g.param_shapes() == _full_shapes(model)


def test_functional_more_ops_and_constants():
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor, flag: bool = False, mask=None) -> torch.Tensor:
            y = F.max_pool2d(F.relu6(self.conv(x)), 2)
            y = F.hardswish(y) * torch.sigmoid(y)
            y = y + torch.tensor([1.0])  # fx stores this constant on the root while tracing
            if flag:
                y = y * 2
            y = F.adaptive_avg_pool2d(y, 1).reshape(y.shape[0], -1)
            return F.softmax(F.dropout(y, 0.1), dim=-1)

    model = M()
    g = _check(model)
    assert _ops(g) == ["input", "conv", "relu6", "max_pool", "hardswish", "sigmoid", "mul",
                       "add", "global_pool", "flatten", "other_act", "output"]
    assert _preds(g, _ops(g).index("mul")) == [4, 5]
    assert g.nodes[3].attrs == {"kernel": 2, "stride": 2}
    assert not hasattr(model, "_tensor_constant0")


def test_depthwise_and_grouped_conv_kinds():
    model = nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1, groups=8),    # depthwise
        nn.Conv2d(8, 16, 1),                        # pointwise
        nn.Conv2d(16, 16, 3, padding=1, groups=4),  # grouped
        nn.Conv2d(16, 32, 5, groups=16),            # depthwise with multiplier 2
        nn.Conv1d(32, 32, 3, groups=2),
    )
    g = _check(model)
    assert _ops(g)[1:-1] == ["dw_conv", "conv", "group_conv", "dw_conv", "group_conv"]
    assert [n.attrs["groups"] for n in g.nodes[1:-1]] == [8, 1, 4, 16, 2]
    assert g.nodes[4].attrs["kernel"] == 5
    assert all(n.servable for n in g.nodes[1:-1])
    feats = g.shape_features()
    assert feats[1, 4] == 2 and feats[2, 4] == 1  # the "grouped" column
    assert g.param_shapes() == _full_shapes(model)


def test_linear_mlp():
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 32), nn.SiLU(),
                          nn.Linear(32, 4), nn.Tanh())
    g = _check(model)
    assert _ops(g) == ["input", "linear", "gelu", "linear", "silu", "linear", "tanh", "output"]
    assert [n.name for n in g.nodes if n.op == "linear"] == ["0", "2", "4"]
    assert g.param_shapes() == _full_shapes(model)
    d = g.distances()
    assert d[0, 7] == 7 and d[0, 0] == 0 and d[7, 0] > 8  # forward reach vs. backward


def test_data_dependent_control_flow_uses_hooks():
    torch.manual_seed(0)
    model = DataDependent().train()
    x = torch.rand(2, 3, 8, 8) + 0.1  # positive sum: the `pos` branch
    rng = torch.get_rng_state()
    g = _check(model, x, method="hooks")
    assert torch.equal(rng, torch.get_rng_state())  # dropout did not consume the global RNG
    assert model.bn.num_batches_tracked.item() == 0
    assert _ops(g) == ["input", "conv", "batch_norm", "conv", "global_pool", "linear", "output"]
    assert g.nodes[3].name == "pos"  # only the executed branch
    assert g.edges == _chain(g)  # dropout bypassed, flatten invisible, fc linked via `last`
    shapes = _full_shapes(model)
    del shapes["neg.weight"], shapes["neg.bias"]
    assert g.param_shapes() == shapes


def test_data_dependent_without_example_uses_module_order(caplog):
    model = DataDependent().eval()
    with caplog.at_level(logging.WARNING, logger="torch_qinit.graph.capture"):
        g = _check(model, None, method="module_order")
    assert any("module order" in r.getMessage() for r in caplog.records)
    assert _ops(g) == ["input", "conv", "batch_norm", "conv", "conv", "global_pool", "linear",
                       "output"]
    assert g.edges == _chain(g)
    assert g.param_shapes() == _full_shapes(model)
    assert not model.training  # eval flag kept


def test_example_input_attribute_and_failed_forward():
    model = DataDependent()
    model.example_input_array = torch.rand(1, 3, 8, 8)
    assert _check(model, None, method="hooks").nodes[3].name == "pos"
    model = DataDependent()
    model.example_input = -torch.rand(1, 3, 8, 8)
    assert _check(model, None, method="hooks").nodes[3].name == "neg"
    # a wrong-shape example makes the forward fail: module order, not a crash
    assert _check(DataDependent(), torch.rand(1, 5, 8, 8), method="module_order")


def test_hooks_connect_by_tensor_identity():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(3, 4, 1)
            self.c = nn.Conv2d(4, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.mean() > -1:
                y = self.a(x)
                z = self.b(x)
                return self.c(y) + z
            return x

    g = _check(Branchy(), torch.randn(1, 3, 4, 4), method="hooks")
    assert [n.name for n in g.nodes] == ["input", "a", "b", "c", "output"]
    assert _preds(g, 1) == [0] and _preds(g, 2) == [0] and _preds(g, 3) == [1]
    assert _preds(g, 4) == [3]  # the `+` is invisible; output links to the last node


def test_unknown_layer_is_other_and_not_servable():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), Scale(4), nn.PReLU(), nn.ELU(), nn.Flatten(),
                          nn.LazyLinear(2))
    g = _check(model)
    assert _ops(g) == ["input", "conv", "other", "other", "other_act", "flatten", "other",
                       "output"]
    scale, prelu, lazy = g.nodes[2], g.nodes[3], g.nodes[6]
    assert scale.name == "1" and scale.params == {"gamma": (1, 4, 1, 1)}
    assert prelu.params == {"weight": (1,)}
    assert not scale.servable and not prelu.servable and not lazy.servable
    assert lazy.params == {}  # uninitialized lazy parameters have no shape yet

    emb = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 2))
    g = _check(emb)
    assert _ops(g) == ["input", "other", "flatten", "linear", "output"]
    assert g.param_shapes() == _full_shapes(emb)


def test_direct_parameter_next_to_children():
    model = LayerScaleBlock()
    g = _check(model)
    ops = _ops(g)
    assert ops.count("conv") == 1 and ops.count("other") == 1
    other = g.nodes[ops.index("other")]
    assert other.name == "" and other.params == {"layer_scale": (4,)}
    assert _preds(g, ops.index("add")) == [0, ops.index("mul")]
    assert g.param_shapes() == _full_shapes(model)

    class Gated(nn.Module):  # data-dependent: traced by hooks or module order
        def __init__(self) -> None:
            super().__init__()
            self.block = LayerScaleBlock()
            self.head = nn.Conv2d(4, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.block(x)) if x.sum() > 0 else x

    model = Gated()
    for example, method in ((torch.rand(1, 4, 5, 5), "hooks"), (None, "module_order")):
        g = _check(model, example, method=method)
        assert [(n.op, n.name) for n in g.nodes[1:-1]] == [
            ("conv", "block.conv"), ("other", "block"), ("conv", "head")]
        assert g.param_shapes() == _full_shapes(model)


def test_shared_module_used_twice():
    model = Shared()
    g = _check(model)
    assert _ops(g) == ["input", "conv", "relu", "conv", "output"]
    assert [n.name for n in g.nodes[1:4:2]] == ["conv", "conv"]
    assert g.param_shapes() == _full_shapes(model)


def test_tied_parameters_are_listed_once():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    model[2].weight = model[0].weight
    g = _check(model)
    assert g.param_shapes() == _full_shapes(model)  # "2.weight" is not a parameter name
    assert g.nodes[3].attrs["tied"] == {"weight": "0.weight"}


def test_batch_norm_and_layer_norm():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.gn = nn.GroupNorm(2, 8)
            self.ln = nn.LayerNorm(8)
            self.fc = nn.Linear(8, 8)
            self.bn_plain = nn.BatchNorm1d(8, affine=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.gn(self.bn(self.conv(x)))
            y = y.flatten(2).transpose(1, 2)  # [B, HW, C]
            y = self.fc(self.ln(y))
            return self.bn_plain(y.mean(1))

    model = Block()
    g = _check(model)
    assert _ops(g) == ["input", "conv", "batch_norm", "group_norm", "flatten", "layer_norm",
                       "linear", "other", "batch_norm", "output"]
    assert g.nodes[2].params == {"weight": (8,), "bias": (8,)}
    assert g.nodes[5].params == {"weight": (8,), "bias": (8,)} and g.nodes[5].servable
    assert g.nodes[8].params == {} and not g.nodes[8].servable  # affine=False
    assert g.param_shapes() == _full_shapes(model)


def test_instance_norm_is_a_group_norm_with_one_channel_per_group():
    """InstanceNorm was "other": its affine weights got the fallback, and the conv before it was not seen to
    feed a norm."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.InstanceNorm2d(8, affine=True), nn.ReLU(),
                          nn.Conv2d(8, 8, 3), nn.InstanceNorm2d(8), nn.ReLU())
    g = _check(model)
    assert _ops(g) == ["input", "conv", "group_norm", "relu", "conv", "group_norm", "relu", "output"]
    assert g.nodes[2].attrs == {"groups": 8} and g.nodes[2].servable
    assert g.nodes[2].params == {"weight": (8,), "bias": (8,)} and g.nodes[5].params == {}


def test_resnet18_sized():
    model = ResNet18()
    g = _check(model)
    ops = _ops(g)
    assert ops.count("conv") == 20  # 1 stem + 16 in blocks + 3 downsample
    assert ops.count("batch_norm") == 20
    assert ops.count("add") == 8
    assert all(len(_preds(g, i)) == 2 for i, op in enumerate(ops) if op == "add")
    assert ops.count("max_pool") == 1 and ops.count("global_pool") == 1
    assert ops[-2] == "linear"
    names = [n.name for n in g.nodes if n.op == "conv"]
    assert "layer2.0.downsample.0" in names and names[0] == "conv1"
    assert g.param_shapes() == _full_shapes(model)
    assert g.distances().shape == (len(g), len(g))


def test_single_module_and_parameter_free_models():
    conv = nn.Conv2d(3, 4, 3)
    g = _check(conv, method=None)
    assert _ops(g) == ["input", "conv", "output"]
    assert g.param_shapes() == {"weight": (4, 3, 3, 3), "bias": (4,)}
    g = _check(nn.Sequential(nn.ReLU(), nn.Flatten()))
    assert _ops(g) == ["input", "relu", "flatten", "output"]
    g = _check(nn.Identity(), method=None)
    assert _ops(g) == ["input", "output"]


def test_not_a_module_raises_type_error():
    with pytest.raises(TypeError, match="nn.Module"):
        capture("not a module")
    with pytest.raises(TypeError):
        capture(lambda x: x)  # type: ignore[arg-type]


def test_hooks_retry_in_eval_mode_when_training_forward_fails():
    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:
                x = x * 2
            return self.bn(self.fc(x))  # batch of one fails in training mode

    model = Head().train()
    g = _check(model, torch.rand(1, 4), method="hooks")
    assert _ops(g) == ["input", "linear", "batch_norm", "output"]
    assert model.training and model.bn.training


# --------------------------------------------------------------------------- #
# capture changes nothing (issue 10, item 1) and says why fx was not used (item 12)
# --------------------------------------------------------------------------- #
class Stateful(nn.Module):
    """A forward with side effects: a step counter, a running-mean input normalizer, Python state.

    With `branch=True` it also has data-dependent control flow (so fx fails and the hooks path runs
    the forward on real tensors) and clips its own weight in place, as weight-clipping code does.
    """

    def __init__(self, branch: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.branch = branch
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("mean", torch.zeros(4))
        self.calls = 0
        self.history: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        self.count.add_(1)
        self.mean.add_(0.5)  # stands in for mean += (x.mean(0) - mean) / count
        self.calls += 1
        self.history.append(self.calls)
        self.cache = "set in forward"
        if self.branch:
            self.fc.weight.data.clamp_(-0.01, 0.01)
            torch.rand(1)  # consumes the global RNG
            if x.sum() > 0:
                x = x * 2
        return self.fc((x - self.mean) / self.count.clamp(min=1))


@pytest.mark.parametrize("branch, method", [(False, "fx"), (True, "hooks")])
def test_capture_leaves_buffers_attributes_and_parameters_untouched(branch, method):
    model = Stateful(branch)
    weight = model.fc.weight.detach().clone()
    rng = torch.get_rng_state()
    g = capture(model, torch.ones(2, 4))
    assert g.method == method
    assert model.steps.item() == 0 and model.count.item() == 0 and torch.equal(model.mean, torch.zeros(4))
    assert model.calls == 0 and model.history == [] and not hasattr(model, "cache")
    assert torch.equal(model.fc.weight, weight)
    assert torch.equal(torch.get_rng_state(), rng)
    # and it still runs as before: the state was restored, not frozen
    model(torch.ones(2, 4))
    assert model.steps.item() == 1 and model.calls == 1 and model.history == [1]


def test_capture_note_says_why_fx_failed():
    from torch_qinit.graph import capture_with_note

    g, note = capture_with_note(nn.Sequential(nn.Linear(4, 2)))
    assert g.method == "fx" and note == ""
    g, note = capture_with_note(Stateful(branch=True), torch.ones(1, 4))
    assert g.method == "hooks"
    assert "torch.fx could not trace Stateful" in note and "TraceError" in note and "forward pass" in note
    g, note = capture_with_note(Stateful(branch=True))
    assert g.method == "module_order" and "no example input" in note and "example_input=" in note
    g, note = capture_with_note(Stateful(branch=True), torch.ones(1, 5))  # the forward fails
    assert g.method == "module_order" and "forward pass on the example input failed" in note


def test_scripted_module_is_captured_with_a_note():
    from torch_qinit.graph import capture_with_note

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated in torch 2.13
        scripted = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))
    g, note = capture_with_note(scripted)
    assert g.method == "module_order" and "ScriptModule" in note and "TorchScript" in note
    assert not any(n.servable for n in g.nodes)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("make", [lambda: nn.Linear(0, 4), lambda: nn.Linear(4, 0), lambda: nn.Conv2d(3, 0, 3)])
def test_empty_layers_are_not_servable(make):
    g = capture(nn.Sequential(make()))
    node = next(n for n in g.nodes if n.name == "0")
    assert node.op == "other" and node.attrs.get("empty") is True and not node.servable


def test_transposed_conv_layout_swap_matches_torch_for_any_channels_and_groups():
    """For random channels, groups and kernels: the graph's shape is the conv layout, the swap is its own
    inverse, and the swapped conv weight makes ConvTranspose2d compute conv2d with the flipped kernel."""
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from torch_qinit.graph.layout import conv_layout, swap_channel_axes

    @settings(max_examples=25, deadline=None)
    @given(groups=st.integers(1, 3), cin_per=st.integers(1, 3), cout_per=st.integers(1, 3), k=st.sampled_from([1, 3]))
    def check(groups, cin_per, cout_per, k):
        layer = nn.ConvTranspose2d(cin_per * groups, cout_per * groups, k, padding=k // 2, groups=groups, bias=False)
        shape = conv_layout(tuple(layer.weight.shape), groups)
        assert shape == (cout_per * groups, cin_per, k, k)
        conv_weight = torch.randn(shape)
        stored = swap_channel_axes(conv_weight, groups)
        assert stored.shape == layer.weight.shape and torch.equal(swap_channel_axes(stored, groups), conv_weight)
        x = torch.randn(1, cin_per * groups, 5, 5)
        with torch.no_grad():
            layer.weight.copy_(stored)
            expected = nn.functional.conv2d(x, conv_weight.flip(-1, -2), padding=k // 2, groups=groups)
            assert torch.allclose(layer(x), expected, atol=1e-5)

    check()
