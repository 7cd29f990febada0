import pytest
import torch

from torch_qinit.space import BLOCK_TYPES, SPLIT_SIZES, SPLITS, build_arch, get_arch


def test_held_out_split_sizes_meet_the_floor():
    assert SPLIT_SIZES["test"] >= 50
    assert all(SPLIT_SIZES[s] >= 20 for s in ("wide", "deep", "nobn"))


@pytest.mark.parametrize("split", SPLITS)
def test_architectures_are_reproducible(split):
    assert get_arch(split, 3) == get_arch(split, 3)
    a, b = build_arch(split, 3), build_arch(split, 3)
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]


def test_training_never_collides_with_held_out():
    held = {get_arch(s, i).key() for s, n in SPLIT_SIZES.items() for i in range(n)}
    train = {get_arch("train", i).key() for i in range(2000)}
    assert not held & train


def test_splits_have_their_character():
    assert all(not get_arch("nobn", i).use_bn and all(st.block not in ("conv_bn", "dws_bn")
               for st in get_arch("nobn", i).stages) for i in range(20))
    assert all(min(st.depth for st in get_arch("deep", i).stages) >= 3 for i in range(20))
    assert all(min(st.width for st in get_arch("wide", i).stages) >= 64 for i in range(20))
    used = {st.block for i in range(50) for st in get_arch("test", i).stages}
    assert used == set(BLOCK_TYPES)


def test_every_block_type_runs_forward():
    x = torch.randn(2, 1, 28, 28)
    for i in range(12):
        assert build_arch("test", i)(x).shape == (2, 10)


def test_bad_split_and_index():
    with pytest.raises(ValueError, match="unknown split"):
        get_arch("val", 0)
    with pytest.raises(IndexError):
        get_arch("test", SPLIT_SIZES["test"])
