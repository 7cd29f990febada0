"""Signal propagation: the fan-in rule, the calibration pass, and training from the prediction."""
import math

import pytest
import torch
from torch import nn

import torch_qinit
from torch_qinit.ghn import GHN, GHNConfig
from torch_qinit.ghn.calibration import BATCH, calibrate_scales, first_layer, first_layer_inputs, synthetic_input
from torch_qinit.ghn.signal import ACT_GAINS, signal_rules
from torch_qinit.graph import capture
from torch_qinit.hub import load_ghn
from torch_qinit.space import build_arch


@pytest.fixture(scope="module")
def ghn():
    """The bundled GHN-QAT once it is version 2; until then an untrained version-2 GHN."""
    bundled = load_ghn("default")
    if bundled.config.decoder_version >= 2:
        return bundled
    torch.manual_seed(0)
    return GHN(GHNConfig()).eval()


def _ratio(model, ghn, x, **kw):
    torch_qinit.initialize_(model, bits=4, weights=ghn, **kw)
    with torch.no_grad():
        y = model(x)
    return (y.std() / x.std()).item()


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "tanh", "hardswish"])
def test_activation_gains_keep_the_second_moment(name):
    x = torch.linspace(-12, 12, 200001, dtype=torch.float64)
    density = torch.exp(-x ** 2 / 2) / math.sqrt(2 * math.pi) * (x[1] - x[0])
    f = {"relu": torch.relu, "gelu": nn.functional.gelu, "silu": nn.functional.silu, "tanh": torch.tanh,
         "hardswish": nn.functional.hardswish}[name]
    assert ACT_GAINS[name] == pytest.approx(1 / math.sqrt((f(x) ** 2 * density).sum().item()), abs=2e-4)


def test_signal_rules_read_the_graph():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.GELU(),
                          nn.Flatten(), nn.LazyLinear(16), nn.Linear(16, 10))
    model(torch.zeros(1, 1, 8, 8))
    graph = capture(model)
    rules = {n.name: rules for n, rules in zip(graph.nodes, signal_rules(graph).values())}
    assert rules["0"].normed and rules["0"].gain == ACT_GAINS["relu"]     # conv → BN → ReLU: BN absorbs the scale,
    assert not rules["0"].free                                            # so the factor stays 1 (He's norm)
    assert not rules["3"].free and rules["3"].gain == ACT_GAINS["gelu"]   # conv → GELU
    assert not rules["6"].free and rules["6"].gain == 1.0                 # linear → linear
    assert rules["7"].free and rules["7"].gain == 1.0                     # the logits


def test_a_weight_batch_norm_absorbs_gets_he_norm(ghn):
    """Before BN the learned factor would only set the step size (BN cancels the weight's scale), so it is
    fixed at 1: He's std. The shipped GHN-QAT put 2x there (4x smaller effective learning rate)."""
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 48, 3, bias=False),
                          nn.BatchNorm2d(48), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 10))
    torch_qinit.initialize_(model, bits=4, weights=ghn)
    for conv in (model[0], model[3]):
        fan_in = conv.weight[0].numel()
        he_std = math.sqrt(2.0 / fan_in)
        assert conv.weight.detach().pow(2).mean().sqrt().item() == pytest.approx(he_std, rel=0.02)


def _plain_cnn(depth, bn):
    layers, c = [], 1
    for _ in range(depth):
        layers += [nn.Conv2d(c, 16, 3, padding=1)] + ([nn.BatchNorm2d(16)] if bn else []) + [nn.ReLU()]
        c = 16
    return nn.Sequential(*layers)


@pytest.mark.parametrize("bn", [False, True])
def test_fifty_layer_plain_cnn_keeps_its_scale(ghn, bn):
    torch.manual_seed(1)
    ratio = _ratio(_plain_cnn(50, bn), ghn, torch.randn(16, 1, 28, 28))
    assert 0.3 <= ratio <= 3, ratio


def test_thousand_layer_linear_stack_keeps_its_scale(ghn):
    """Through 999 layers the signal keeps its scale. The last Linear is the logit layer: its scale is
    the GHN's learned temperature (factor in [1/4, 4] of the fan-in rule, plus the predicted bias), so
    it is bounded separately (the trained checkpoints put it near 4: measured 4.3 for ghn-qat)."""
    torch.manual_seed(1)
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(1000)])
    x = torch.randn(64, 8)
    torch_qinit.initialize_(model, bits=4, weights=ghn)
    with torch.no_grad():
        hidden = model[:-1](x)
        logits = model[-1](hidden)
    assert 0.3 <= (hidden.std() / x.std()).item() <= 3
    assert 0.1 <= (logits.std() / hidden.std()).item() <= 6


def test_without_calibration_deep_stacks_are_not_guaranteed(ghn):
    """The calibration is what guarantees the scale (the raw prediction of an untrained GHN drifts)."""
    torch.manual_seed(1)
    model = nn.Sequential(*[m for _ in range(200) for m in (nn.Linear(64, 64), nn.ReLU())])
    report = torch_qinit.initialize_(model, bits=4, weights=ghn, calibrate=False)
    assert report.calibration_note == ""
    report = torch_qinit.initialize_(model, bits=4, weights=ghn)
    # the last Linear feeds only a ReLU before the output: it emits the logits, so the cap, not the rescaling
    assert "199 layers rescaled" in report.calibration_note


def test_calibration_changes_only_the_predictions():
    torch.manual_seed(0)
    ghn = GHN(GHNConfig(hidden=32, layers=1, heads=4)).eval()
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(),
                          nn.Flatten(), nn.LazyLinear(10))
    model(torch.zeros(1, 1, 28, 28))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    graph = capture(model)
    with torch.no_grad():
        preds = ghn(graph, bits=4)
    raw = preds["3.weight"].clone()
    result = calibrate_scales(model, graph, preds)
    assert set(result.factors) == {"3"}, "only the conv that no norm follows is rescaled (not the logits)"
    torch.testing.assert_close(preds["3.weight"], raw * result.factors["3"])
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_calibration_skips_a_model_it_cannot_run():
    torch.manual_seed(0)
    ghn = GHN(GHNConfig(hidden=32, layers=1, heads=4)).eval()
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    graph = capture(model)
    with torch.no_grad():
        preds = ghn(graph, bits=4)
    result = calibrate_scales(model, graph, preds, example_input=torch.randn(4, 5))  # wrong width
    assert result.skipped and "forward pass failed" in result.skipped


@pytest.mark.parametrize("model, shape", [
    (nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)),
     (BATCH, 4, 20, 20)),
    (nn.Sequential(nn.Conv1d(3, 5, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(5, 2)),
     (BATCH, 3, 20)),
    (nn.Sequential(nn.Embedding(10, 6), nn.Flatten(), nn.Linear(6, 2)), None),  # an embedding takes no floats...
    (nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2)), (BATCH, 12)),
])
def test_first_layer_shapes_the_synthetic_input(model, shape):
    """One first-layer rule for the checkpoint choice (its input size) and the calibration batch (its shape)."""
    graph = capture(model)
    node = first_layer(graph)
    x = synthetic_input(graph, model, 20)
    if shape is None:  # ...but the linear after it is the first conv/linear layer: 6 input features
        assert node.name == "2" and first_layer_inputs(node) == 6
        return
    assert first_layer_inputs(node) == shape[1] and tuple(x.shape) == shape
    assert model(x).shape[0] == BATCH


@pytest.mark.parametrize("opt", ["sgd0.1", "sgd0.02", "adam"])
def test_qat_from_the_prediction_does_not_diverge(ghn, opt):
    """LeNet-5 started from the GHN, the textbook recipes: SGD momentum 0.9 at lr 0.02 / 0.1, Adam 1e-3."""
    torch.manual_seed(0)
    model = build_arch("classic", 0)  # lenet5
    torch_qinit.initialize_(model, bits=4, weights=ghn)
    teacher = nn.Linear(28 * 28, 10)
    x = torch.randn(512, 1, 28, 28)
    y = teacher(x.flatten(1)).argmax(1)
    if opt == "adam":
        optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        optim = torch.optim.SGD(model.parameters(), lr=float(opt[3:]), momentum=0.9)
    losses = []
    for step in range(40):
        idx = torch.randint(0, 512, (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses), losses
    assert max(losses[-10:]) < 3 * losses[0], losses


def _lenet(ghn, x, **kw):
    """LeNet-5 initialized from `ghn` and calibrated on `x`; its report and its logits' std on `x`."""
    model = build_arch("classic", 0)
    report = torch_qinit.initialize_(model, bits=4, weights=ghn, example_input=x, **kw)
    with torch.no_grad():
        logits = model(x)
    return model, report, logits


def test_logit_std_caps_the_logit_layer_and_keeps_the_argmax(ghn, monkeypatch):
    """logit_std scales only the output layer, down to the cap on the calibration input; argmax is unchanged.
    (Scale balancing, which would spread that factor along the chain, is off here; test_ghn_balance.py.)"""
    from torch_qinit.ghn.balance import BalanceResult

    monkeypatch.setattr("torch_qinit.initialize.balance_checked", lambda *a, **k: BalanceResult())
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # image-like: in [0, 1)
    plain, _, logits = _lenet(ghn, x, logit_std=None)
    cap = logits.std().item() / 4
    capped, report, capped_logits = _lenet(ghn, x, logit_std=cap)
    assert capped_logits.std().item() == pytest.approx(cap, rel=1e-3)
    assert torch.equal(capped_logits.argmax(1), logits.argmax(1))
    assert "logits scaled by" in report.calibration_note and f"to std {cap:g}" in report.calibration_note
    before, after = dict(plain.named_parameters()), dict(capped.named_parameters())
    for name, p in after.items():
        if name.startswith("11."):  # the output layer: weight and bias, one factor below 1
            ratio = p.detach() / before[name].detach()
            torch.testing.assert_close(ratio, torch.full_like(ratio, 0.25), rtol=1e-3, atol=0)
        else:
            assert torch.equal(p, before[name]), name


def test_logit_std_never_scales_up(ghn):
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    plain, _, logits = _lenet(ghn, x, logit_std=None)
    capped, report, _ = _lenet(ghn, x, logit_std=2 * logits.std().item())
    assert "kept" in report.calibration_note
    for (name, a), (_, b) in zip(plain.named_parameters(), capped.named_parameters()):
        assert torch.equal(a, b), name


def test_the_default_caps_ghn_logits_at_auto_logit_std_and_leaves_the_rest_alone(ghn):
    """logit_std="auto" (the default) is a cap of AUTO_LOGIT_STD for a calibrated GHN-QAT start; the float GHN, a
    classic method or calibrate=False take it without error or warning (an explicit cap there is an error, below)."""
    import warnings

    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    _, _, raw_logits = _lenet(ghn, x, logit_std=None)
    assert raw_logits.std().item() > 2 * torch_qinit.initialize.AUTO_LOGIT_STD  # so the default has work to do
    default, report, logits = _lenet(ghn, x)
    explicit, _, _ = _lenet(ghn, x, logit_std=torch_qinit.initialize.AUTO_LOGIT_STD)
    assert logits.std().item() == pytest.approx(torch_qinit.initialize.AUTO_LOGIT_STD, rel=1e-3)
    assert torch.equal(logits.argmax(1), raw_logits.argmax(1))
    assert "to std 1" in report.calibration_note
    for (name, a), (_, b) in zip(default.named_parameters(), explicit.named_parameters()):
        assert torch.equal(a, b), name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch_qinit.initialize_(build_arch("classic", 0), method="he_normal", generator=0)
        torch_qinit.initialize_(build_arch("classic", 0), bits=4, weights=ghn, calibrate=False)
    # the float GHN keeps its logit scale by default (the cap hurt it): the same as logit_std=None
    _, float_report, float_logits = _lenet(ghn, x, method="ghn")
    _, _, float_raw = _lenet(ghn, x, method="ghn", logit_std=None)
    assert torch.equal(float_logits, float_raw) and "logit" not in float_report.calibration_note


@pytest.mark.parametrize("kw", [dict(logit_std=0), dict(logit_std="Auto"), dict(logit_std=-1.0),
                                dict(logit_std=float("nan")), dict(logit_std=float("inf")), dict(logit_std=True),
                                dict(logit_std="1"),
                                dict(logit_std=1.0, calibrate=False), dict(logit_std=1.0, method="he_normal")])
def test_bad_logit_std_raises_with_the_model_untouched(ghn, kw):
    model = build_arch("classic", 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="logit_std"):
        torch_qinit.initialize_(model, bits=4, weights=ghn, **kw)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_calibrate_scales_logit_std_rejects_bad_values_before_running():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="logit_std"):
        calibrate_scales(model, capture(model), {}, logit_std=-1.0)
