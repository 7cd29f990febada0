"""The calibration pass on hand-set predictions (no GHN needed): each calibrated layer's output comes out at unit
std in execution order, the logit cap scales only down, what is skipped and why, and the one-line summary."""
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from torch_qinit.ghn.calibration import (
    BATCH,
    CalibrationResult,
    calibrate_scales,
    calibrated_layers,
    check_logit_std,
    first_layer,
    output_divisor,
    output_layers,
    synthetic_input,
)
from torch_qinit.graph import capture


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def preds_of(model, scale=3.0):
    """Predictions: the model's own parameters, blown up so calibration has something to fix."""
    return {k: v.detach() * scale for k, v in model.named_parameters()}


def _outputs(model, params, x):
    """The output of every Linear of `model` run with `params`."""
    outs = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: outs.setdefault(n, o)) for n, m in model.named_modules()
             if isinstance(m, nn.Linear)]
    with torch.no_grad():
        functional_call(model, params, (x,))
    for h in hooks:
        h.remove()
    return outs


def test_calibrated_layers_come_out_at_unit_std_in_execution_order():
    model = mlp()
    graph = capture(model)
    assert calibrated_layers(graph) == ["0", "2"] and output_layers(graph) == ["4"]
    preds = preds_of(model)
    raw = dict(preds)
    x = torch.randn(BATCH, 6, generator=torch.Generator().manual_seed(1))
    result = calibrate_scales(model, graph, preds, example_input=x)
    assert set(result.factors) == {"0", "2"} and result.skipped is None
    outs = _outputs(model, preds, x)
    # layer 2 is measured after layer 0 was rescaled, so both end at std 1
    assert outs["0"].std().item() == pytest.approx(1.0, rel=1e-4)
    assert outs["2"].std().item() == pytest.approx(1.0, rel=1e-4)
    for name in ("0", "2"):  # weight and bias share the factor
        for local in ("weight", "bias"):
            key = f"{name}.{local}"
            torch.testing.assert_close(preds[key], raw[key] * result.factors[name])
    # the logits keep the GHN's scale without a cap
    assert torch.equal(preds["4.weight"], raw["4.weight"]) and result.logit_stds == {} and result.logit_factors == {}
    assert result.summary().startswith("2 layers rescaled, factors ")


def test_logit_cap_scales_down_only_and_reports_the_measured_std():
    model = mlp()
    graph = capture(model)
    x = torch.randn(BATCH, 6, generator=torch.Generator().manual_seed(1))
    preds = preds_of(model)
    plain = dict(preds)
    calibrate_scales(model, graph, plain, example_input=x)
    measured = _outputs(model, plain, x)["4"].std().item()
    cap = measured / 2
    capped = preds_of(model)
    result = calibrate_scales(model, graph, capped, example_input=x, logit_std=cap)
    assert result.logit_std == cap and set(result.logit_stds) == {"4"}
    assert result.logit_stds["4"] == pytest.approx(measured, rel=1e-4)
    assert result.logit_factors["4"] == pytest.approx(0.5, rel=1e-4)
    assert _outputs(model, capped, x)["4"].std().item() == pytest.approx(cap, rel=1e-4)
    torch.testing.assert_close(capped["4.bias"], plain["4.bias"] * result.logit_factors["4"])
    assert result.summary().endswith(f"; logits scaled by {result.logit_factors['4']:.3g} to std {cap:g}")
    # a cap above the measured std keeps the logits
    kept = preds_of(model)
    result = calibrate_scales(model, graph, kept, example_input=x, logit_std=2 * measured)
    assert result.logit_factors == {} and torch.equal(kept["4.weight"], plain["4.weight"])
    assert result.summary().endswith(f"; logits std {result.logit_stds['4']:.3g} <= {2 * measured:g}, kept")


def test_nothing_to_calibrate_and_skips():
    # every weight feeds a norm or is the output: nothing to do, not even a forward pass
    bn_net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    bn_net(torch.zeros(1, 1, 6, 6))
    graph = capture(bn_net)
    assert calibrated_layers(graph) == [] and output_layers(graph) == ["4"]  # a BN is neither
    result = calibrate_scales(bn_net, graph, preds_of(bn_net), image_size=6)
    assert result.factors == {} and result.skipped is None
    assert result.summary() == "nothing to calibrate (every weight feeds a norm or the output)"
    result = calibrate_scales(bn_net, graph, preds_of(bn_net), image_size=6, logit_std=1.0)
    assert set(result.logit_stds) == {"4"}  # with a cap the output layer is measured
    # no predictions for the calibrated layers: nothing to do either
    assert calibrate_scales(mlp(), capture(mlp()), {}).factors == {}
    # a 3-D conv: no synthetic input can be made
    net3d = nn.Sequential(nn.Conv3d(1, 2, 1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    net3d(torch.zeros(1, 1, 2, 2, 2))
    graph3d = capture(net3d)
    assert synthetic_input(graph3d, net3d, 8) is None
    result = calibrate_scales(net3d, graph3d, preds_of(net3d))
    assert result.skipped == "no input shape could be inferred; pass example_input"
    assert result.summary() == "skipped (no input shape could be inferred; pass example_input)"


def test_a_dead_layer_is_left_alone():
    model = mlp()
    preds = preds_of(model)
    preds["0.weight"] = torch.zeros_like(preds["0.weight"])  # constant output: std 0, no factor
    preds["0.bias"] = torch.zeros_like(preds["0.bias"])
    result = calibrate_scales(model, capture(model), preds, example_input=torch.randn(4, 6))
    assert "0" not in result.factors and set(result.factors) == {"2"}
    assert torch.equal(preds["0.weight"], torch.zeros(8, 6))


def test_no_conv_or_linear_means_no_first_layer():
    model = nn.Sequential(nn.ReLU(), nn.Flatten())
    graph = capture(model)
    assert first_layer(graph) is None and synthetic_input(graph, model, 28) is None


def test_synthetic_input_is_fixed_and_follows_the_model_dtype():
    model = mlp().double()
    graph = capture(model)
    a, b = synthetic_input(graph, model, 28), synthetic_input(graph, model, 28)
    assert a.dtype == torch.float64 and a.shape == (BATCH, 6) and torch.equal(a, b)


def test_summary_texts():
    assert CalibrationResult(factors={"a": 0.5, "b": 2.0}).summary() == "2 layers rescaled, factors 0.5..2"
    assert CalibrationResult(skipped="why").summary() == "skipped (why)"
    assert CalibrationResult(logit_std=1.5).summary() == ("nothing to calibrate (every weight feeds a norm or the "
                                                          "output); logit_std 1.5: no output layer measured")
    assert CalibrationResult(factors={"a": 0.5, "b": 1.0, "c": 2.0}).summary() == "3 layers rescaled, factors 0.5..2"
    r = CalibrationResult(logit_std=1.0, logit_stds={"x": 3.0, "y": 4.0, "z": 5.0},
                          logit_factors={"x": 1 / 3, "y": 0.25, "z": 0.2})
    assert r.summary().endswith("; logits scaled by 0.2..0.333 to std 1")


def test_check_logit_std():
    assert check_logit_std(None) is None
    assert check_logit_std(2) == 2.0 and isinstance(check_logit_std(2), float)
    for bad in (0, -1.0, math.nan, math.inf, True, "1"):
        with pytest.raises(ValueError, match=r"^logit_std must be a positive finite number or None, got "):
            check_logit_std(bad)


def test_output_divisor_is_a_constant_std():
    out = torch.randn(10, 4) * 5
    out.requires_grad_()
    y = out / output_divisor(out)
    assert y.std().item() == pytest.approx(1.0, rel=1e-5)
    y.sum().backward()
    torch.testing.assert_close(out.grad, torch.full_like(out, 1 / out.detach().std().item()))  # std is a constant
    small = torch.randn(10, 4) * 0.01
    assert (small / output_divisor(small)).std().item() == pytest.approx(1.0, rel=1e-5)  # scaled up too
    zeros = torch.zeros(3)
    assert torch.isfinite(zeros / output_divisor(zeros)).all()


def test_small_outputs_are_scaled_up_and_no_hook_is_left_behind():
    model = mlp()
    graph = capture(model)
    x = torch.randn(BATCH, 6, generator=torch.Generator().manual_seed(2))
    preds = preds_of(model, scale=0.1)  # outputs well below unit std: the factors are > 1
    result = calibrate_scales(model, graph, preds, example_input=x)
    assert all(f > 1 for f in result.factors.values()) and set(result.factors) == {"0", "2"}
    assert _outputs(model, preds, x)["2"].std().item() == pytest.approx(1.0, rel=1e-4)
    assert all(not m._forward_hooks for m in model.modules())
    with torch.no_grad():  # the model itself runs as before
        torch.testing.assert_close(model(x), functional_call(model, dict(model.named_parameters()), (x,)))


class _Twice(nn.Module):
    """One Linear (registered once) called twice, then the logits."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.relu(self.lin(torch.relu(self.lin(x)))))


def test_a_shared_layer_is_measured_at_its_first_call():
    torch.manual_seed(0)
    model = _Twice()
    graph = capture(model)
    assert calibrated_layers(graph) == ["lin", "lin"]
    preds = preds_of(model)
    x = torch.randn(BATCH, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        first = nn.functional.linear(x, preds["lin.weight"], preds["lin.bias"])
    result = calibrate_scales(model, graph, preds, example_input=x)
    assert result.factors["lin"] == pytest.approx(1 / first.std().item(), rel=1e-5)


def test_two_element_outputs_are_measured_and_non_finite_ones_skipped():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 2), nn.ReLU(), nn.Linear(2, 3))
    x = torch.randn(1, 6)
    result = calibrate_scales(model, capture(model), preds_of(model), example_input=x)
    assert set(result.factors) == {"0"}  # a [1, 2] output has a std
    preds = preds_of(model)
    preds["0.weight"] = torch.full_like(preds["0.weight"], math.nan)
    result = calibrate_scales(model, capture(model), preds, example_input=torch.randn(4, 6))
    assert result.factors == {} and torch.isnan(preds["0.weight"]).all()


def test_skipped_and_empty_results_keep_the_cap():
    model = mlp()
    assert calibrate_scales(model, capture(model), {}, logit_std=2.0).logit_std == 2.0
    failed = calibrate_scales(model, capture(model), preds_of(model), example_input=torch.randn(2, 5), logit_std=2.0)
    assert failed.logit_std == 2.0 and failed.skipped.startswith("forward pass failed: RuntimeError: ")
    net3d = nn.Sequential(nn.Conv3d(1, 2, 1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    net3d(torch.zeros(1, 1, 2, 2, 2))
    assert calibrate_scales(net3d, capture(net3d), preds_of(net3d), logit_std=2.0).logit_std == 2.0


def test_a_module_registered_under_two_names_is_calibrated_not_skipped():
    """nn.Sequential(lin, act, lin): state_dict lists the shared tensors twice, which functional_call refuses;
    the pass runs with one name per tensor and measures the shared layer at its first call."""
    torch.manual_seed(0)
    lin = nn.Linear(8, 8)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), lin, nn.ReLU(), lin, nn.ReLU(), nn.Linear(8, 3))
    graph = capture(model)
    preds = {k: v.detach() * 3.0 for k, v in model.named_parameters()}  # first names only: 0, 2, 6
    x = torch.randn(BATCH, 6, generator=torch.Generator().manual_seed(4))
    result = calibrate_scales(model, graph, preds, example_input=x)
    assert result.skipped is None, result.skipped
    assert {"0", "2"} <= set(result.factors)
    outs = _outputs(model, preds, x)
    assert outs["0"].std().item() == pytest.approx(1.0, rel=1e-4)
    assert outs["2"].std().item() == pytest.approx(1.0, rel=1e-4)  # its first call, after layer 0's fix


@pytest.mark.parametrize("device, dtype", [
    ("cpu", torch.float64),
    pytest.param("cuda", torch.float32, marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
])
def test_a_model_of_another_dtype_or_device_is_calibrated_not_skipped(device, dtype):
    # The GHN predicts float32 CPU tensors; a float64 or CUDA model used to fail the calibration forward
    # (mixed dtypes/devices) and silently keep its uncalibrated scales. Now it gets the float32 CPU result.
    ref_model = mlp()
    ref_preds = preds_of(ref_model)
    x = torch.randn(BATCH, 6, generator=torch.Generator().manual_seed(1))
    ref = calibrate_scales(ref_model, capture(ref_model), ref_preds, example_input=x)
    model = mlp().to(device=device, dtype=dtype)
    preds = preds_of(mlp())  # float32 on the CPU, as the GHN returns them
    result = calibrate_scales(model, capture(model), preds, example_input=x.to(device=device, dtype=dtype))
    assert result.skipped is None and set(result.factors) == {"0", "2"}
    for name in ref.factors:
        assert result.factors[name] == pytest.approx(ref.factors[name], rel=1e-4)
    assert all(v.device.type == "cpu" and v.dtype == torch.float32 for v in preds.values())  # still the GHN's


def test_dropout_draws_do_not_depend_on_the_global_rng():
    """Calibration runs in train mode, so dropout draws; a fixed seed inside the pass makes the factors the
    same whatever the caller's RNG state, and that state is as it was afterwards."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    graph = capture(model)
    factors = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        state = torch.get_rng_state()
        factors.append(calibrate_scales(model, graph, preds_of(model), logit_std=1.0))
        assert torch.equal(torch.get_rng_state(), state)
    assert factors[0].factors == factors[1].factors and factors[0].logit_factors == factors[1].logit_factors
