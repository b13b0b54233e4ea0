"""scripts/model_figures.py still draws every diagram of the docs from the model as it is: a
change to the model that breaks a hook, a shape or the cache fails here, not when someone next
redraws the figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def figures():
    return load_script("model_figures")


def test_every_diagram_is_drawn_from_the_model(figures, tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "IMAGES", tmp_path)
    monkeypatch.setattr(sys, "argv", ["model_figures.py"])
    figures.main()
    drawn = sorted(p.name for p in tmp_path.glob("*.png"))
    assert [name for name in drawn if not (ROOT / "docs" / "images" / name).is_file()] == []  # all in the docs
    assert {"model_overview.png", "model_kv_cache.png", "model_rope.png", "configs_model_sizes.png"} <= set(drawn)
    assert all((tmp_path / name).stat().st_size < 150_000 for name in drawn)


def test_cached_decoding_in_the_figure_equals_full_recompute(figures):
    calls, ids, worst = figures.cached_decoding(figures.small_model(), "ROMEO:", steps=3)
    assert calls == [(0, 6), (6, 1), (7, 1), (8, 1)]
    assert len(ids) == 9
    assert worst < 1e-4
