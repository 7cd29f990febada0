"""Layers with torch parametrizations (weight_norm, spectral_norm, a pruning mask) are served by the GHN."""
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

import torch_qinit
from torch_qinit.graph import capture


def net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(32, 10))


class Mask(nn.Module):
    """A pruning mask like torch.ao.pruning's: no right_inverse, so the stored tensor is the weight itself."""

    def __init__(self, shape):
        super().__init__()
        self.register_buffer("mask", (torch.arange(torch.Size(shape).numel()) % 3 != 0).float().reshape(shape))

    def forward(self, w):
        return w * self.mask


class Broken(nn.Module):
    """Inverts once, at registration, then fails (a right_inverse with a bug for some values)."""

    armed = False

    def forward(self, w):
        return w

    def right_inverse(self, w):
        if self.armed:
            raise RuntimeError("cannot invert")
        return w


def stored(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_the_graph_sees_the_weight_a_parametrized_layer_computes():
    model = net()
    parametrizations.weight_norm(model[4])
    parametrizations.spectral_norm(model[8])
    nodes = {n.name: n for n in capture(model).nodes}
    assert nodes["4"].op == "conv" and nodes["4"].params == {"weight": (32, 16, 3, 3), "bias": (32,)}
    assert nodes["8"].op == "linear" and nodes["8"].params == {"weight": (10, 32), "bias": (10,)}
    assert nodes["4"].attrs["parametrized"] == ["weight"] and nodes["4"].servable


def test_weight_norm_stores_the_norm_and_direction_of_the_prediction():
    plain, model = net(), net()
    parametrizations.weight_norm(model[4])
    ids = {n: id(p) for n, p in model.named_parameters()}
    report = torch_qinit.initialize_(model, bits=4, balance=False)
    torch_qinit.initialize_(plain, bits=4, balance=False)
    assert report.num_fallback == 0 and "4.parametrizations.weight.original0" in report.predicted
    assert {n: id(p) for n, p in model.named_parameters()} == ids  # the same parameter objects
    with torch.no_grad():
        torch.testing.assert_close(model[4].weight, plain[4].weight, rtol=1e-5, atol=1e-6)
        g = model[4].parametrizations.weight.original0
        torch.testing.assert_close(g.flatten(), plain[4].weight.flatten(1).norm(dim=1), rtol=1e-5, atol=1e-6)
        x = torch.randn(4, 1, 28, 28)
        torch.testing.assert_close(model.eval()(x), plain.eval()(x), rtol=1e-4, atol=1e-5)


def test_a_mask_without_right_inverse_stores_the_prediction_and_calibrates_the_masked_layer():
    plain, model = net(), net()
    parametrize.register_parametrization(model[4], "weight", Mask(model[4].weight.shape))
    report = torch_qinit.initialize_(model, bits=4, balance=False, calibrate=False)
    torch_qinit.initialize_(plain, bits=4, balance=False, calibrate=False)
    assert report.num_fallback == 0
    torch.testing.assert_close(model[4].parametrizations.weight.original, plain[4].weight)
    # with calibration, the masked layer is measured as it runs (with its mask): its factor differs
    masked, unmasked = net(), net()
    parametrize.register_parametrization(masked[4], "weight", Mask(masked[4].weight.shape))
    a = torch_qinit.initialize_(masked, bits=4, balance=False).calibration_note
    b = torch_qinit.initialize_(unmasked, bits=4, balance=False).calibration_note
    assert a.startswith("1 layers rescaled") and b.startswith("1 layers rescaled") and a != b


def test_spectral_norm_is_served_and_never_balanced():
    model = net()
    parametrizations.spectral_norm(model[4])
    report = torch_qinit.initialize_(model, bits=4)
    assert report.num_fallback == 0 and "balanced" not in report.calibration_note
    assert "skipped" not in report.calibration_note  # a barrier, not a failed check


def test_a_failing_right_inverse_falls_back_with_the_reason_and_strict_refuses_untouched():
    model = net()
    broken = Broken()
    parametrize.register_parametrization(model[4], "weight", broken)
    broken.armed = True
    before = stored(model)
    with pytest.raises(ValueError, match="strict=True.*right_inverse of Broken failed"):
        torch_qinit.initialize_(model, bits=4, strict=True)
    after = stored(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # the calibration pass wrote nothing either
    report = torch_qinit.initialize_(model, bits=4)
    assert report.fallback == {"4.parametrizations.weight.original":
                               "right_inverse of Broken failed (RuntimeError: cannot invert); he_normal"}


def test_a_refused_call_leaves_weight_norm_tensors_untouched():
    """The calibration pass used to run with "4.weight" swapped in, which assigns through weight_norm's setter
    and rewrote the stored norm and direction before any later check could refuse the call."""
    model = nn.Sequential(*net(), nn.PReLU())
    parametrizations.weight_norm(model[4])
    before = stored(model)
    with pytest.raises(ValueError, match="strict=True"):
        torch_qinit.initialize_(model, bits=4, strict=True)  # PReLU cannot be served
    after = stored(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_classic_method_draws_what_the_layer_computes():
    """He normal on a weight_norm layer: the computed weight has He's std and the stored norms are positive
    (drawing for the stored (out, 1, 1, 1) norm itself gave it fan-in 1: random sizes and signs)."""
    model = nn.Sequential(nn.Conv2d(16, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3))
    parametrizations.weight_norm(model[0])
    parametrize.register_parametrization(model[2], "weight", Mask(model[2].weight.shape))
    report = torch_qinit.initialize_(model, method="he_normal", generator=0)
    assert report.sources["0.parametrizations.weight.original0"] == "he_normal"
    g = model[0].parametrizations.weight.original0.detach()
    assert (g > 0).all()
    with torch.no_grad():
        assert abs(model[0].weight.std().item() / (2 / (16 * 9)) ** 0.5 - 1) < 0.1
        assert abs(model[2].parametrizations.weight.original.std().item() / (2 / (64 * 9)) ** 0.5 - 1) < 0.1


def test_a_failing_right_inverse_on_the_root_module_gives_its_reason():
    """The stored tensor of a parametrized root module is named "parametrizations.weight.original", without
    a leading "<layer>."; its fallback reason was "not in the captured graph"."""
    model = nn.Linear(16, 10)
    broken = Broken()
    parametrize.register_parametrization(model, "weight", broken)
    broken.armed = True
    report = torch_qinit.initialize_(model, bits=4, example_input=torch.randn(4, 16))
    assert report.fallback == {"parametrizations.weight.original":
                               "right_inverse of Broken failed (RuntimeError: cannot invert); he_normal"}


def legacy_weight_norm(module: nn.Module) -> nn.Module:
    """The old hook-based torch.nn.utils.weight_norm (deprecated by torch, still in older code)."""
    with pytest.warns(FutureWarning):
        return nn.utils.weight_norm(module)


def test_the_graph_sees_the_weight_an_old_style_weight_norm_layer_computes():
    model = net()
    legacy_weight_norm(model[4])
    nodes = {n.name: n for n in capture(model).nodes}
    assert nodes["4"].op == "conv" and nodes["4"].params == {"weight": (32, 16, 3, 3), "bias": (32,)}
    assert nodes["4"].attrs["parametrized"] == ["weight"] and nodes["4"].servable


def test_old_style_weight_norm_stores_the_norm_and_direction_of_the_prediction():
    """Before, its weight_g / weight_v made the layer "op not servable" (He fallback); a model built only of
    such layers was refused outright."""
    plain, model = net(), net()
    legacy_weight_norm(model[4])
    legacy_weight_norm(model[8])
    report = torch_qinit.initialize_(model, bits=4, balance=False)
    torch_qinit.initialize_(plain, bits=4, balance=False)
    assert report.num_fallback == 0 and {"4.weight_g", "4.weight_v", "8.weight_g"} <= set(report.predicted)
    with torch.no_grad():
        # the `weight` attribute the pre-hook recomputes is fresh before any forward
        torch.testing.assert_close(model[4].weight, plain[4].weight, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model[4].weight_g.flatten(), plain[4].weight.flatten(1).norm(dim=1),
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model[8].weight, plain[8].weight, rtol=1e-5, atol=1e-6)
        x = torch.randn(4, 1, 28, 28)
        torch.testing.assert_close(model.eval()(x), plain.eval()(x), rtol=1e-4, atol=1e-5)


def test_a_classic_method_draws_what_an_old_style_weight_norm_layer_computes():
    model = nn.Sequential(nn.Conv2d(16, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3))
    legacy_weight_norm(model[0])
    report = torch_qinit.initialize_(model, method="he_normal", generator=0)
    assert report.sources["0.weight_g"] == report.sources["0.weight_v"] == "he_normal"
    assert (model[0].weight_g > 0).all()
    with torch.no_grad():
        assert abs(model[0].weight.std().item() / (2 / (16 * 9)) ** 0.5 - 1) < 0.1


@pytest.mark.parametrize("apply", [parametrizations.weight_norm, parametrizations.spectral_norm, legacy_weight_norm])
def test_pytorch_default_draws_what_the_layer_computes(apply):
    """reset_parameters() on a layer with a computed weight draws into the computed tensor and is lost (the
    stored tensors kept their values while the report said "pytorch_default"); an old-style weight_norm model
    could not even be deep-copied. The same draws as on the plain net are now stored as the layer stores them."""
    plain, model = net(), net()
    apply(model[4])
    before = model[4].weight.detach().clone()
    report = torch_qinit.initialize_(model, method="pytorch_default", generator=3)
    torch_qinit.initialize_(plain, method="pytorch_default", generator=3)
    assert report.num_fallback == 0
    with torch.no_grad():
        if apply is parametrizations.spectral_norm:  # its right_inverse stores the draw as it is
            torch.testing.assert_close(model[4].parametrizations.weight.original, plain[4].weight)
        else:
            torch.testing.assert_close(model[4].weight, plain[4].weight, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(model[4].weight, before, atol=1e-3)
        torch.testing.assert_close(model[8].weight, plain[8].weight)


class Scaled(nn.Module):
    """A custom layer with its own reset_parameters: the library cannot tell its weight's shape."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.weight = nn.Parameter(torch.ones(4))

    def reset_parameters(self):
        nn.init.constant_(self.weight, 2.0)

    def forward(self, x):
        return self.fc(x) * self.weight


class Negate(nn.Module):
    def forward(self, w):
        return -w

    def right_inverse(self, w):
        return -w


def test_pytorch_default_on_a_custom_parametrized_layer_and_a_failing_right_inverse():
    """A custom layer's own reset_parameters draws its computed weight; a right_inverse that fails leaves
    the stored tensor as it was, and says so (both crashed with a KeyError)."""
    model = nn.Sequential(Scaled(), nn.ReLU(), nn.Linear(4, 2))
    parametrize.register_parametrization(model[0], "weight", Negate())
    report = torch_qinit.initialize_(model, method="pytorch_default", generator=0)
    assert report.sources["0.parametrizations.weight.original"] == "pytorch_default"
    with torch.no_grad():
        assert torch.equal(model[0].weight, torch.full((4,), 2.0))
    broken = Broken()
    parametrize.register_parametrization(model[2], "weight", broken)
    broken.armed = True
    before = model[2].parametrizations.weight.original.detach().clone()
    report = torch_qinit.initialize_(model, method="pytorch_default", generator=0)
    assert report.sources["2.parametrizations.weight.original"] == "unchanged (its layer's right_inverse failed)"
    assert torch.equal(model[2].parametrizations.weight.original, before)


class ScaledWithoutReset(Scaled):
    reset_parameters = None  # not callable: pytorch_default has nothing to run


def test_pytorch_default_on_a_parametrized_layer_without_reset_parameters_says_so():
    """Its stored tensor read "right_inverse failed" (the reason of a different case)."""
    model = nn.Sequential(ScaledWithoutReset(), nn.ReLU(), nn.Linear(4, 2))
    parametrize.register_parametrization(model[0], "weight", Negate())
    before = model[0].parametrizations.weight.original.detach().clone()
    report = torch_qinit.initialize_(model, method="pytorch_default", generator=0)
    assert report.sources["0.parametrizations.weight.original"] == "unchanged (no reset_parameters)"
    assert torch.equal(model[0].parametrizations.weight.original, before)
