"""torch_qinit.bits: one spec type, one validator, one expansion, one act_bits rule, used everywhere."""
import pytest
import torch
from torch import nn

from torch_qinit.bits import FLOAT, SAME, act_spec, check_bits, check_spec, expand_bits


def test_check_spec_checks_every_width_and_the_names():
    for ok in (None, 4, {"a": 2, "b": None}):
        check_spec(ok, known=["a", "b"])
    with pytest.raises(ValueError, match=r"bits\['b'\] must be an int in 2..8"):
        check_spec({"a": 2, "b": 9})
    with pytest.raises(TypeError, match="w_bits must be an int"):
        check_spec(4.0, "w_bits")
    with pytest.raises(ValueError, match=r"x: unknown layer names \['zz'\]"):
        check_spec({"zz": 4}, "x", known=["a"])
    with pytest.raises(ValueError, match="nope names"):
        check_spec({"zz": 4}, "nope", known=[], unknown_message="{what} names {unknown}")
    assert check_bits(3) == 3 and check_bits(None) is None


def test_expand_bits_per_layer():
    assert expand_bits(4, ["a", "b"]) == {"a": 4, "b": 4}
    assert expand_bits(None, ["a"]) == {"a": None}
    assert expand_bits({"a": 2}, ["a", "b"], default=8) == {"a": 2, "b": 8}
    assert expand_bits({"a": 2}, ["a", "b"], only_named=True) == {"a": 2}


def test_one_act_bits_rule():
    assert act_spec(4, None) == 4 and act_spec({"a": 2}, SAME) == {"a": 2}
    assert act_spec(4, FLOAT) is None and act_spec(4, 8) == 8 and act_spec(4, {"a": 3}) == {"a": 3}
    with pytest.raises(ValueError, match="a_bits must be"):
        act_spec(4, "fp32", "a_bits")


def test_float_activations_mean_the_same_in_initialize_and_quant(tmp_path):
    import torch_qinit
    from torch_qinit.ghn import GHN, GHNConfig
    from torch_qinit.hub import save_pretrained
    from torch_qinit.quant import quantize_model, quantized_layers

    torch.manual_seed(0)
    save_pretrained(GHN(GHNConfig(hidden=32, layers=1, heads=4, decoder_rank=8)), tmp_path)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    report = torch_qinit.initialize_(net, bits=4, act_bits=FLOAT, weights=str(tmp_path), calibrate=False)
    assert report.act_bits == {"0": None, "3": None} and report.bits == {"0": 4, "3": 4}
    ghn = torch_qinit.hub.load_ghn(str(tmp_path))
    with torch.no_grad():
        expected = ghn(torch_qinit.capture(net), bits=4, act_bits=None)
    assert torch.equal(net[0].weight.detach(), expected["0.weight"])
    q = quantize_model(net, w_bits=4, a_bits=FLOAT)
    assert {(m.w_bits, m.a_bits) for m in quantized_layers(q).values()} == {(4, None)}
    q = quantize_model(net, w_bits=4, a_bits=SAME)
    assert {(m.w_bits, m.a_bits) for m in quantized_layers(q).values()} == {(4, 4)}
