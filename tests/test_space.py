import math

import pytest
import torch
from torch import nn

from torch_qinit.graph import capture
from torch_qinit.space import (
    ACTIVATIONS,
    ALL_BLOCK_TYPES,
    BLOCK_TYPES,
    CLASSIC_NAMES,
    SPLIT_SIZES,
    SPLITS,
    ArchSpec,
    ClassicSpec,
    StageSpec,
    build_arch,
    classic_names,
    get_arch,
    make_block,
)

_PARAM_LAYERS = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
_SHAPES = ((1, 28), (3, 32))


def _train_specs(n: int) -> list[ArchSpec]:
    return [get_arch("train", i) for i in range(n)]


def _check_capture(model: nn.Module) -> None:
    g = capture(model)
    assert g.method == "fx"
    served = {p for node in g.nodes if node.servable for p in node.param_names()}
    need = {f"{mn}.{pn}" for mn, m in model.named_modules() if isinstance(m, _PARAM_LAYERS)
            for pn, _ in m.named_parameters(recurse=False)}
    assert need <= served, need - served


def _fingerprint(model: nn.Module) -> tuple:
    """Layer types and parameter shapes in order: equal fingerprints mean the same net."""
    return tuple((type(m).__name__, tuple(tuple(p.shape) for p in m.parameters(recurse=False)))
                 for m in model.modules() if not list(m.children()))


def test_held_out_split_sizes_meet_the_floor():
    assert SPLIT_SIZES["test"] >= 50
    assert all(SPLIT_SIZES[s] >= 20 for s in ("wide", "deep", "nobn"))
    assert SPLIT_SIZES["classic"] == len(CLASSIC_NAMES) >= 10


@pytest.mark.parametrize("split", SPLITS)
def test_architectures_are_reproducible(split):
    assert get_arch(split, 3) == get_arch(split, 3)
    assert get_arch(split, 3, 3, 100) == get_arch(split, 3, 3, 100)
    a, b = build_arch(split, 3), build_arch(split, 3)
    assert [(n, p.shape) for n, p in a.named_parameters()] == [(n, p.shape) for n, p in b.named_parameters()]


def test_training_never_collides_with_held_out():
    held = {get_arch(s, i).key() for s, n in SPLIT_SIZES.items() for i in range(n)}
    train = {get_arch("train", i).key() for i in range(2000)}
    assert not held & train


def test_training_never_draws_a_classic_net():
    classic = [get_arch("classic", i) for i in range(SPLIT_SIZES["classic"])]
    assert all(isinstance(c, ClassicSpec) for c in classic)
    train = _train_specs(1000)
    assert not any(isinstance(s, ClassicSpec) for s in train)
    assert not {c.key() for c in classic} & {s.key() for s in train}
    # Structurally too: no train net equals a classic net layer for layer (MLPs are the risky family).
    with torch.device("meta"):
        classic_fp = {_fingerprint(c.build()) for c in classic}
        mlps = [s for s in train if s.family == "mlp"]
        assert len(mlps) >= 20
        for s in mlps + train[:60]:
            assert _fingerprint(s.build()) not in classic_fp, s.describe()


def test_splits_have_their_character():
    for i in range(20):
        nobn = get_arch("nobn", i)
        assert not nobn.use_bn and all(st.block not in ("conv_bn", "dws_bn") for st in nobn.stages)
        assert not any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm))
                       for m in nobn.build().modules())
    assert all(min(st.depth for st in get_arch("deep", i).stages) >= 3 for i in range(20))
    assert all(min(st.width for st in get_arch("wide", i).stages) >= 64 for i in range(20))
    assert sum(max(st.width for st in get_arch("wide", i).stages) >= 256 for i in range(20)) >= 10
    used = {st.block for i in range(50) for st in get_arch("test", i).stages}
    assert used == set(ALL_BLOCK_TYPES)


def test_train_space_covers_the_hand_written_features():
    specs = _train_specs(300)
    cnns = [s for s in specs if s.family == "cnn"]
    stages = [st for s in cnns for st in s.stages]
    share = lambda pred, xs: sum(map(pred, xs)) / len(xs)  # noqa: E731
    assert {st.kernel for st in stages} | {s.stem_kernel for s in cnns} == {1, 3, 5, 7}
    assert {st.block for st in stages} == set(ALL_BLOCK_TYPES)
    assert {st.down for st in stages} == {"stride", "max", "avg"}
    assert {s.act for s in specs} == set(ACTIVATIONS)
    assert {s.head_pool for s in cnns} == {"avg", "max", "flatten", "conv", "conv_act"}
    assert {len(s.head) for s in cnns} == {0, 1, 2}  # 1-3 Linear layers
    assert share(lambda s: s.dropout > 0, cnns) > 0.05
    assert share(lambda st: st.se, stages) > 0.05 and any(st.se_linear for st in stages)
    assert 0.03 < share(lambda s: s.family == "mlp", specs) < 0.2
    normed = [s for s in cnns if s.use_bn]
    assert share(lambda s: s.norm == "gn", normed) > 0.1 and share(lambda s: s.norm == "ln", normed) > 0.05
    assert share(lambda s: s.bias is True, normed) > 0.1       # conv bias kept next to a norm
    assert share(lambda s: not s.use_bn, cnns) > 0.1
    # Wide layers: a small share of archs, only at <= 8x8 (the CPU cost of GHN training).
    wide = share(lambda s: max(st.width for st in s.stages) >= 256, cnns)
    assert 0.03 < wide < 0.25
    assert max(st.width for st in stages) == 512
    for s in cnns:
        res = s.resolution
        for st in s.stages:
            res = math.ceil(res / 2)
            assert st.width <= (512 if res <= 8 else 64), s.describe()


def test_built_train_nets_contain_the_new_modules():
    found: set[str] = set()
    for i in range(60):
        for m in build_arch("train", i).modules():
            if isinstance(m, nn.GroupNorm):
                found.add("gn1" if m.num_groups == 1 else "gn")
            elif isinstance(m, nn.Conv2d):
                found.add(f"k{m.kernel_size[0]}")
                found.add("strided" if m.stride[0] == 2 else "")
            found.add(type(m).__name__)
    assert {"gn", "gn1", "k1", "k3", "k5", "k7", "strided", "MaxPool2d", "AvgPool2d", "AdaptiveMaxPool2d",
            "DenseBlock", "FireBlock", "SqueezeExcite", "Dropout", "BatchNorm2d"} <= found


@pytest.mark.parametrize("split", ["train", "test", "wide", "deep", "nobn"])
def test_sampled_nets_run_and_capture_on_both_inputs(split):
    for cin, res in _SHAPES:
        for i in range(6 if split == "train" else 3):
            model = build_arch(split, i, cin, 7).eval()
            with torch.no_grad():
                assert model(torch.randn(2, cin, res, res)).shape == (2, 7)
            _check_capture(model)


def test_concat_and_se_are_visible_to_the_graph():
    ops: set[str] = set()
    for i in range(40):
        ops |= {n.op for n in capture(build_arch("train", i)).nodes}
    assert {"concat", "mul", "add", "group_norm", "max_pool", "avg_pool", "global_pool", "linear"} <= ops


@pytest.mark.parametrize("name", CLASSIC_NAMES)
def test_every_classic_net_runs_on_both_inputs(name):
    index = CLASSIC_NAMES.index(name)
    for cin, res in _SHAPES:
        spec = get_arch("classic", index, cin, 10)
        assert spec.name == name and spec.key().startswith("classic/")
        model = spec.build()
        model.train()  # BN in train mode needs a batch > 1
        assert model(torch.randn(4, cin, res, res)).shape == (4, 10)
        assert sum(p.numel() for p in model.parameters()) <= 3_500_000
        _check_capture(model)


def test_classic_split_lists_the_families():
    names = classic_names()
    assert names == CLASSIC_NAMES and len(set(names)) == len(names)
    for family in ("lenet5", "alexnet", "vgg11", "vgg11_bn", "resnet18", "mobilenetv2", "densenet", "squeezenet"):
        assert family in names
    assert sum(n.startswith("mlp") for n in names) >= 3
    assert get_arch("classic", names.index("vgg11_bn")).use_bn and not get_arch("classic", names.index("vgg11")).use_bn


def test_default_archspec_is_the_original_space():
    """benchmarks/init_study builds ArchSpec(16, stages, act, use_bn, ...) positionally: same net as before."""
    spec = ArchSpec(16, tuple(StageSpec(b, w, 1, 3) for b, w in (("conv_bn", 16), ("residual", 32))), "relu", True)
    names = [n for n, _ in spec.build().named_parameters()]
    assert names[:3] == ["stem.0.weight", "stem.1.weight", "stem.1.bias"]
    assert names[-2:] == ["classifier.weight", "classifier.bias"]
    assert isinstance(spec.build().classifier, nn.Linear)
    for kind in BLOCK_TYPES:
        assert make_block(kind, 8, 16, 3, 2, "relu", True)(torch.randn(2, 8, 8, 8)).shape == (2, 16, 4, 4)


def test_bad_split_and_index():
    with pytest.raises(ValueError, match="unknown split"):
        get_arch("validation", 0)
    with pytest.raises(IndexError):
        get_arch("test", SPLIT_SIZES["test"])
    with pytest.raises(IndexError):
        get_arch("classic", SPLIT_SIZES["classic"])


def test_a_plain_share_of_cnns_looks_like_hand_written_ones():
    """PLAIN_SHARE of draws are conv-BN-ReLU-family nets with global average pool and one Linear."""
    from torch_qinit.space.sampler import PLAIN_SHARE

    specs = [get_arch("train", i) for i in range(300)]
    plain = [s for s in specs if s.family == "cnn" and s.norm == "bn" and s.head_pool == "avg" and not s.head
             and s.act in ("relu", "relu6", "hardswish") and all(not st.se and st.down == "stride" for st in s.stages)]
    assert 0.6 * PLAIN_SHARE < len(plain) / len(specs) < 1.4 * PLAIN_SHARE


# --------------------------------------------------------------------------- unpadded ("valid") training nets

def _head_input_side(model: nn.Module, spec, channels: int) -> int:
    """The side of the map the head receives, measured on a forward pass."""
    seen = []
    handle = model.features.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-1]))
    with torch.no_grad():
        out = model.eval()(torch.randn(2, channels, spec.resolution, spec.resolution))
    handle.remove()
    assert out.shape == (2, spec.num_classes)
    return seen[0]


@pytest.mark.parametrize("channels", [1, 3])
def test_unpadded_training_nets_run_and_their_head_side_is_predicted(channels):
    from torch_qinit.space import feature_resolution
    from torch_qinit.space.sampler import VALID_SHARE

    specs = [get_arch("train", i, channels) for i in range(300)]
    cnns = [s for s in specs if s.family == "cnn"]
    unpadded = [s for s in cnns if s.padding == "valid"]
    assert 0.5 * VALID_SHARE < len(unpadded) / len(cnns) < 1.5 * VALID_SHARE
    for spec in unpadded[:25] + cnns[:10]:
        model = spec.build()
        assert _head_input_side(model, spec, channels) == feature_resolution(spec) >= 1
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert (convs[0].padding == (0, 0)) == (spec.padding == "valid")  # the stem
        assert "| valid" in spec.name if spec.padding == "valid" else "valid" not in spec.name


def test_unpadded_twins_give_flatten_heads_the_sides_padded_nets_never_reach():
    # Padded stages reach 28 -> 14 -> 7 -> 4 -> 2; LeNet-5's head sees 5x5 maps, so training must draw such sides.
    from torch_qinit.space import feature_resolution

    sides = {feature_resolution(s) for s in (get_arch("train", i) for i in range(1500))
             if s.family == "cnn" and s.head_pool == "flatten" and s.padding == "valid"}
    assert {3, 5, 6} <= sides


def test_held_out_splits_and_val_are_never_unpadded():
    for split, n in SPLIT_SIZES.items():
        if split != "classic":
            assert all(get_arch(split, i).padding == "same" for i in range(n)), split


def test_only_plain_convs_have_an_unpadded_form():
    assert make_block("conv", 4, 8, 5, 1, "relu", False, valid=True)[0].padding == (0, 0)
    assert make_block("conv_bn", 4, 8, 3, 1, "relu", True)[0].padding == (1, 1)
    for kind in set(ALL_BLOCK_TYPES) - {"conv", "conv_bn"}:
        with pytest.raises(ValueError, match="no unpadded form"):
            make_block(kind, 4, 8, 3, 1, "relu", True, valid=True)


def test_at_image_size_pads_an_unpadded_net_whose_maps_would_vanish():
    from torch_qinit.space import at_image_size, feature_resolution

    spec = next(s for s in (get_arch("train", i) for i in range(200)) if s.padding == "valid")
    assert at_image_size(spec, spec.resolution) is spec
    tiny = at_image_size(spec, 2)  # 2x2 inputs: an unpadded stem (kernel >= 3) leaves nothing
    assert tiny.image_size == 2 and tiny.padding == "same" and feature_resolution(tiny) >= 1
    assert _head_input_side(tiny.build(), tiny, 1) == feature_resolution(tiny)
    assert at_image_size(spec, 24).padding == "valid"  # still fits: stays unpadded


# --------------------------------------------------------------------------- conv heads (SqueezeNet-style)

@pytest.mark.parametrize("channels", [1, 3])
def test_a_share_of_training_cnns_end_in_a_conv_head_whose_conv_is_the_logit_layer(channels):
    import torch_qinit
    from torch_qinit.ghn.calibration import output_layers
    from torch_qinit.space.sampler import CONV_HEAD_SHARE, CONV_HEADS

    cnns = [s for s in (get_arch("train", i, channels) for i in range(400)) if s.family == "cnn"]
    heads = [s for s in cnns if s.head_pool in CONV_HEADS]
    assert 0.5 * CONV_HEAD_SHARE < len(heads) / len(cnns) < 1.5 * CONV_HEAD_SHARE
    assert {s.head_pool for s in heads} == set(CONV_HEADS) and all(not s.head for s in heads)
    for spec in heads[:6]:
        model = spec.build()
        convs = [m for m in model.classifier if isinstance(m, nn.Conv2d)]
        assert len(convs) == 1 and convs[0].out_channels == spec.num_classes and convs[0].kernel_size == (1, 1)
        assert any(isinstance(m, ACTIVATIONS[spec.act]) for m in model.classifier) == (spec.head_pool == "conv_act")
        x = torch.randn(2, channels, spec.resolution, spec.resolution)
        assert model.eval()(x).shape == (2, spec.num_classes)
        conv_name = next(n for n, m in model.named_modules() if m is convs[0])
        assert output_layers(torch_qinit.capture(model, x)) == [conv_name]


def test_held_out_splits_and_val_never_end_in_a_conv_head():
    for split, n in SPLIT_SIZES.items():
        if split != "classic":
            assert all(get_arch(split, i).head_pool in ("avg", "max", "flatten") for i in range(n)), split


# --------------------------------------------------------------------------- pre-activation dense blocks (DenseNet-BC)

def test_a_preact_dense_block_is_densenet_bc_ordered_and_keeps_sizes():
    from torch_qinit.space.blocks import DenseBlock

    block = make_block("dense", 8, 16, 3, 2, "relu", True, preact=True)
    assert isinstance(block, DenseBlock) and len(block.units) == 2
    growth = 4  # max(4, 16 // 4)
    unit = block.units[0]
    kinds = [type(m).__name__ for m in unit.modules() if not isinstance(m, nn.Sequential)]
    assert kinds == ["BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d"]  # norm-act-1x1, norm-act-kxk
    assert (unit[0][2].kernel_size, unit[0][2].out_channels) == ((1, 1), 4 * growth)
    assert (unit[1][2].kernel_size, unit[1][2].out_channels) == ((3, 3), growth)
    assert all(m.bias is None for m in block.modules() if isinstance(m, nn.Conv2d))  # a norm follows each conv
    assert [type(m).__name__ for m in block.transition] == ["BatchNorm2d", "ReLU", "Conv2d"]
    assert block.transition[0].num_features == 8 + 2 * growth
    assert block(torch.randn(2, 8, 7, 7)).shape == (2, 16, 4, 4)
    plain = make_block("dense", 8, 16, 3, 1, "relu", False, preact=True)
    assert isinstance(plain.units[0][0][0], nn.Identity) and plain.units[0][0][2].bias is not None
    for kind in set(ALL_BLOCK_TYPES) - {"dense"}:
        with pytest.raises(ValueError, match="no pre-activation form"):
            make_block(kind, 4, 8, 3, 1, "relu", True, preact=True)


def test_a_share_of_training_nets_with_dense_stages_are_preact_and_the_ghn_serves_them():
    from torch_qinit.space.sampler import PREACT_SHARE

    specs = [get_arch("train", i) for i in range(600)]
    dense = [s for s in specs if s.family == "cnn" and any(st.block == "dense" for st in s.stages)]
    preact = [s for s in dense if s.preact]
    assert 0.5 * PREACT_SHARE < len(preact) / len(dense) < 1.5 * PREACT_SHARE
    assert all(s in dense for s in specs if s.preact)  # only nets with a dense stage
    for spec in preact[:3]:
        model = spec.build()
        assert spec.name.endswith("| preact")
        assert model.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 10)
        _check_capture(model)
        norms_first = [b for b in model.features if type(b).__name__ == "DenseBlock"]
        assert norms_first and all(isinstance(b.units[0][0][0], (nn.BatchNorm2d, nn.GroupNorm, nn.Identity))
                                   for b in norms_first)


def test_held_out_splits_and_val_are_never_preact():
    for split, n in SPLIT_SIZES.items():
        if split != "classic":
            assert not any(get_arch(split, i).preact for i in range(n)), split
