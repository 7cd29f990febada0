"""initialize_ → torch.export → prepare_qat_pt2e (X86 Inductor quantizer, is_qat=True) → train → convert_pt2e.

PT2E does not make ConvBn modules: it rewrites the exported graph so that each conv weight is scaled by
its BN's gamma / sqrt(running_var + eps) before the weight fake quantizer. These tests check that the
predicted conv and BN values are what that fused pattern reads, that QAT starts from them, and that the
converted int weights are the trained, BN-folded weights.
"""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

import torch_qinit

pytest.importorskip("torchao", reason="needs the 'torchao' extra: pip install torch_qinit[torchao]")
from torchao.quantization.pt2e import (  # noqa: E402
    disable_fake_quant,
    enable_fake_quant,
    move_exported_model_to_eval,
)
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e  # noqa: E402
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (  # noqa: E402
    X86InductorQuantizer,
    get_default_x86_inductor_quantization_config,
)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def qat_config(bits: int):
    """The X86 Inductor QAT config (8-bit), or the same observers narrowed to ``bits``."""
    cfg = get_default_x86_inductor_quantization_config(is_qat=True)
    if bits == 8:
        return cfg
    q = 2 ** (bits - 1)
    weight = dataclasses.replace(cfg.weight, quant_min=-q, quant_max=q - 1)
    act = dataclasses.replace(cfg.input_activation, quant_min=0, quant_max=2 ** bits - 1)
    return dataclasses.replace(cfg, input_activation=act, output_activation=act, weight=weight)


g = torch.Generator().manual_seed(0)
# export specializes the batch size, so every call uses the example's batch of 16
X, Y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
PAIRS = (("conv1", "bn1"), ("conv2", "bn2"))


def _get_attr_ancestors(node: torch.fx.Node) -> set[str]:
    seen, stack, out = set(), [node], set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "get_attr":
            out.add(n.target)
        stack.extend(n.all_input_nodes)
    return out


def _conv_nodes(gm: torch.fx.GraphModule) -> list[torch.fx.Node]:
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target == torch.ops.aten.conv2d.default]


def _prepare_and_train(ghn_dir: str, bits: int) -> tuple[torch.fx.GraphModule, dict, dict]:
    """initialize_ → export → prepare_qat_pt2e → 3 SGD steps, checking the values on the way."""
    model = SmallCNN().train()
    report = torch_qinit.initialize_(model, bits=bits, weights=ghn_dir)
    assert report.num_fallback == 0
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref = copy.deepcopy(model)(X)  # train-mode float output (batch statistics); the copy keeps BN buffers

    exported = torch.export.export(model, (X,)).module()
    prepared = prepare_qat_pt2e(exported, X86InductorQuantizer().set_global(qat_config(bits)))

    # the predicted values are the prepared graph's parameters, under their original names
    params = dict(prepared.named_parameters())
    assert set(params) == set(init)
    for name, value in init.items():
        assert torch.equal(params[name], value), name
    # conv+bn are fused: each conv reads a fake-quantized weight computed from the predicted conv weight
    # and BN gamma
    convs = _conv_nodes(prepared)
    assert len(convs) == 2
    for node, (conv, bn) in zip(convs, PAIRS):
        weight_inputs = _get_attr_ancestors(node.args[1])
        assert {f"{conv}.weight", f"{bn}.weight", f"{bn}.running_var"} <= weight_inputs, weight_inputs
        assert any(str(n.target).startswith("activation_post_process") for n in _walk_modules(node.args[1]))

    # QAT starts from them: with fake quant off, the prepared graph computes the initialized float model
    prepared.apply(disable_fake_quant)
    torch.testing.assert_close(prepared(X), ref, rtol=1e-4, atol=1e-4)
    prepared.apply(enable_fake_quant)

    opt = torch.optim.SGD(prepared.parameters(), lr=0.01)
    for step in range(3):
        loss = nn.functional.cross_entropy(prepared(X), Y)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            grads = {n: p.grad.clone() for n, p in prepared.named_parameters()}
        opt.step()
        if step == 0:  # the first step moves each value by exactly -lr * grad from its predicted value
            for n, p in prepared.named_parameters():
                torch.testing.assert_close(p.detach(), init[n] - 0.01 * grads[n], rtol=1e-5, atol=1e-7)
    trained = {n: p.detach().clone() for n, p in prepared.named_parameters()}
    return prepared, trained, {n: b.detach().clone() for n, b in prepared.named_buffers()}


def test_pt2e_prepare_keeps_predicted_values_and_trains(ghn_dir):
    _prepare_and_train(ghn_dir, 8)  # the default X86 config; 4 bits runs in the convert test below


@pytest.fixture
def conv2d_fold_only(monkeypatch: pytest.MonkeyPatch):
    """Speed-up for convert_pt2e: fold only the conv2d+bn patterns.

    torchao 0.18's ``_fold_conv_bn_qat`` exports 96 match/replacement patterns (conv1d, conv2d, and both
    transposed convs) on every call, about 48 s on one CPU thread whatever the model's size. This model only
    has conv2d, where the other three kinds match nothing, so skipping them changes no result.
    """
    from torchao.quantization.pt2e import qat_utils

    helper = getattr(qat_utils, "_fold_conv_bn_qat_helper", None)
    if helper is not None:
        def conv2d_only(m, conv_fn, example_inputs, is_cuda):
            if conv_fn is not torch.nn.functional.conv2d:
                return m
            return helper(m, conv_fn, example_inputs, is_cuda=is_cuda)

        monkeypatch.setattr(qat_utils, "_fold_conv_bn_qat_helper", conv2d_only)


def test_pt2e_convert_gives_trained_bn_folded_int_weights(ghn_dir, conv2d_fold_only):
    bits = 4
    prepared, trained, buffers = _prepare_and_train(ghn_dir, bits)
    move_exported_model_to_eval(prepared)
    converted = convert_pt2e(prepared)
    out = converted(X)
    assert out.shape == (16, 10) and torch.isfinite(out).all()
    # the int weights dequantize to the trained conv weights folded with their BN, on a (2^bits)-level grid
    convs = _conv_nodes(converted)
    assert len(convs) == 2
    for node, (conv, bn) in zip(convs, PAIRS):
        deq = node.args[1]
        assert "dequantize_per_channel" in str(deq.target), deq.target
        q, scale, zp = (_attr(converted, a) for a in deq.args[:3])
        assert tuple(deq.args[4:6]) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        w = (q.float() - zp.reshape(-1, 1, 1, 1)) * scale.reshape(-1, 1, 1, 1)
        gamma = trained[f"{bn}.weight"] / torch.sqrt(buffers[f"{bn}.running_var"] + 1e-5)
        folded = trained[f"{conv}.weight"] * gamma.reshape(-1, 1, 1, 1)
        err = (w - folded).abs() / scale.reshape(-1, 1, 1, 1)  # in quantization steps
        assert err.median() <= 0.5 + 1e-4, (conv, err.median())
        assert (err <= 0.5 + 1e-4).float().mean() > 0.9, conv


def _walk_modules(node: torch.fx.Node) -> list[torch.fx.Node]:
    """call_module nodes among ``node`` and its inputs (the fake quantizers on the weight path)."""
    seen, stack, out = set(), [node], []
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_module":
            out.append(n)
        stack.extend(n.all_input_nodes)
    return out


def _attr(gm: torch.fx.GraphModule, node: torch.fx.Node) -> torch.Tensor:
    assert node.op == "get_attr", node
    obj = gm
    for part in node.target.split("."):
        obj = getattr(obj, part)
    return obj
