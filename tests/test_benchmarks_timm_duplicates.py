"""benchmarks/timm_coverage.py and benchmarks/duplicates.py without timm or torchvision (stand-in modules)."""
from __future__ import annotations

import csv
import sys
import types

import pytest
import torch

from benchmarks import common, duplicates, speed_coverage, timm_coverage


def _fake_timm() -> types.SimpleNamespace:
    """Two families: 'cnns' (a small and a larger CNN) and 'broken' (a model that cannot be built)."""
    def create_model(name, pretrained=False):
        assert pretrained is False
        if name == "broken":
            raise RuntimeError("cannot build")
        return speed_coverage.CNN(4 if name == "small" else 8, depth=1, in_channels=3, num_classes=1000)

    families = {"cnns": ["small", "big"], "other": ["broken"]}
    return types.SimpleNamespace(
        list_models=lambda module=None: families[module] if module else ["big", "broken", "small"],
        list_modules=lambda: list(families), create_model=create_model, __version__="0")


def test_timm_selection_is_per_family_smallest_first():
    timm = _fake_timm()
    chosen, stats = timm_coverage.select_models(timm, max_params=10**9, per_family=1, log=lambda s: None)
    assert [(n, f) for n, f, _ in chosen] == [("small", "cnns"), ("broken", "other")]
    assert stats["listed"] == 3 and stats["meta_failed"] == 1 and stats["families"] == 2
    small = timm_coverage.n_params(timm.create_model("small"))
    chosen, stats = timm_coverage.select_models(timm, max_params=small, per_family=2, log=lambda s: None)
    assert [n for n, _, _ in chosen] == ["small", "broken"] and stats["over_max"] == 1


def test_timm_rows_count_failures_and_paths():
    timm = _fake_timm()
    rows = timm_coverage.timm_rows(timm, [("small", "cnns", None), ("broken", "other", None)], 10**9, 60,
                                   log=lambda s: None)
    by = {r["model"]: r for r in rows}
    assert by["broken"]["status"] == "build failed"
    if common.ghn_available("ghn-qat"):
        assert by["small"]["status"] == "ok" and by["small"]["capture_method"] == "fx"
        assert by["small"]["init_ms"] > 0 and by["small"]["fallback_params"] == 0
        s = timm_coverage.summary(rows)
        assert s["ok"] == s["tried"] == 1 and s["paths"] == {"fx": 1} and s["build_failed"] == 1


def test_time_limit_raises():
    import time

    with pytest.raises(timm_coverage.ModelTimeout):
        with timm_coverage.time_limit(0.05):
            time.sleep(1)


def test_timm_coverage_without_timm_writes_a_note(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    assert timm_coverage.main(["--quick", "--out", str(tmp_path)]) == 0
    assert "timm is not importable" in (tmp_path / "timm_coverage.quick.md").read_text()


def test_duplicate_rows_and_rank_share():
    torch.manual_seed(0)
    w = torch.randn(8, 4, 3, 3)
    assert duplicates.duplicate_rows(w) == 0
    tiled = torch.cat([w, w, w[:2]])  # 18 rows, 10 of them copies
    assert duplicates.duplicate_rows(tiled) == 10
    assert duplicates.rank_share(w)[:2] == (8, 8)
    r, full, share = duplicates.rank_share(tiled)
    assert (r, full) == (8, 18) and share == pytest.approx(8 / 18)


def test_duplicates_on_a_fake_torchvision_v2_has_none():
    def get_model(name, weights=None):
        assert weights is None
        return speed_coverage.CNN(20, depth=1, in_channels=3, num_classes=1000)  # widths up to 160 > 64

    tv = types.SimpleNamespace(models=types.SimpleNamespace(get_model=get_model))
    ghns = duplicates.load_ghns(None, log=lambda s: None)
    rows = duplicates.model_rows(tv, "cnn", ghns, 10**9, rank=True, log=lambda s: None)
    by = {r["ghn"]: r for r in rows if r["part"] == "dups"}
    v2 = by["v2 untrained"]
    assert v2["status"] == "ok" and v2["weights_checked"] == 6 and v2["duplicate_rows"] == 0
    ranks = [r for r in rows if r["part"] == "rank" and r["ghn"] == "v2 untrained"]
    assert len(ranks) == duplicates.RANK_LAYERS and all(r["rank_share"] > 0.5 for r in ranks)
    if "v1 bundled ghn-qat" in by:  # decoder version 1 tiles 64x64 blocks: the baseline has copies
        assert by["v1 bundled ghn-qat"]["duplicate_rows"] > 0
    if "v2 bundled ghn-qat" in by:  # the shipped version-2 checkpoint, trained: still no copies
        assert by["v2 bundled ghn-qat"]["status"] == "ok" and by["v2 bundled ghn-qat"]["duplicate_rows"] == 0
    summary = {s["ghn"]: s for s in duplicates._summary(rows, list(by))}
    assert summary["v2 untrained"]["models_with_duplicates"] == 0
    # over the parameter cap: skipped, unless its rank was asked for (then measured, kept out of the summary)
    assert duplicates.model_rows(tv, "cnn", ghns, 1, rank=False, log=lambda s: None)[0]["status"].startswith("skipped")
    over = duplicates.model_rows(tv, "cnn", ghns[-1:], 1, rank=True, log=lambda s: None)
    assert any(r["part"] == "rank" for r in over)
    assert all(r["in_summary"] is False for r in over if r["part"] == "dups")
    assert duplicates._summary(over, [ghns[-1][0]]) == []


def test_duplicates_without_torchvision_writes_a_note(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    assert duplicates.main(["--quick", "--out", str(tmp_path)]) == 0
    assert "torchvision is not importable" in (tmp_path / "duplicates.quick.md").read_text()
    with (tmp_path / "duplicates.quick.csv").open() as f:
        assert list(csv.DictReader(f))
