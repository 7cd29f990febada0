"""torch_qinit.results: the helpers the demo, compare and the benchmarks share."""
import csv
import math

import pytest
import torch

from torch_qinit.results import MAIN_METHODS, machine_string, mean_std, moving_average, pyplot, write_csv


def test_mean_std():
    assert all(math.isnan(v) for v in mean_std([]))
    assert mean_std([0.5]) == (0.5, 0.0)
    m, s = mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and s == pytest.approx(1.0)  # sample std
    assert all(math.isnan(v) for v in mean_std([1.0, math.nan, 2.0]))
    assert mean_std([1.0, math.nan, 3.0], skip_nan=True) == (2.0, pytest.approx(math.sqrt(2)))
    assert mean_std([math.inf, 1.0, -math.inf], skip_nan=True) == (1.0, 0.0)  # no number either
    assert all(math.isnan(v) for v in mean_std([math.nan], skip_nan=True))


def test_compare_shares_the_one_definition():
    import torch_qinit.compare as compare

    assert compare.mean_std is mean_std and compare.machine_string is machine_string
    assert compare.DEFAULT_METHODS == MAIN_METHODS


def test_write_csv_and_machine(tmp_path):
    threads = torch.get_num_threads()
    path = write_csv(tmp_path / "r.csv", [{"a": 1, "b": "x"}, {"a": 2, "c": 0.5}])
    assert list(csv.reader(path.open())) == [["a", "b", "c"], ["1", "x", ""], ["2", "", "0.5"]]
    path = write_csv(tmp_path / "e.csv", [], columns=["step", "accuracy"])
    assert path.read_text().strip() == "step,accuracy"
    assert "CPUs" in machine_string() and "torch" in machine_string()
    assert machine_string(processor=True).count(",") == machine_string().count(",") + 1
    torch.set_num_threads(1)  # restored below
    try:
        assert machine_string().endswith("1 thread") or ", 1 thread, " in machine_string()
    finally:
        torch.set_num_threads(threads)


def test_pyplot_is_agg_or_none():
    plt = pyplot()
    if plt is not None:
        import matplotlib

        assert matplotlib.get_backend().lower() == "agg"


def test_main_methods_are_known():
    from torch_qinit import methods

    assert set(MAIN_METHODS) <= set(methods())


def test_moving_average_is_a_trailing_mean_that_starts_short():
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert moving_average([2.0, 4.0], 0) == [2.0, 4.0]  # a window below 1 is one point
    assert moving_average([], 5) == []
