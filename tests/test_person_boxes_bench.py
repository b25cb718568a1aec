"""The person-box benchmark's miss diagnosis and take cache
(benchmarks/bench_person_boxes.py), on hand-made boxes and a stub take."""
import os

import numpy as np

from tests.test_clutter import _bench  # the benchmark file loaded as a module


def _stub_take(bench, truth, other=None):
    v, t = truth.shape[:2]
    nan = np.full_like(truth, np.nan)
    return bench.Take("clutter", "walk", 0, [], [], [], [], truth, np.zeros((v, t, 17, 2)),
                      np.ones((v, t)), [], nan if other is None else other)


def test_diagnosis_names_each_cause():
    bench = _bench()
    truth = np.tile(np.array([100.0, 100, 200, 200]), (1, 7, 1))      # [V=1, T=7, 4]
    other = np.full_like(truth, np.nan)
    other[0, 6] = [300, 100, 400, 200]
    boxes = np.array([[[100.0, 100, 200, 200],      # right
                       [90, 90, 210, 210],          # too big (centre right, side 1.2 x)
                       [110, 110, 190, 190],        # too small
                       [115, 100, 215, 200],        # offset sideways
                       [100, 85, 200, 185],         # offset up/down
                       [100, 115, 200, 215],        # off, but fine unsmoothed
                       [300, 100, 400, 200]]])      # the other person
    source = np.array([[0, 0, 0, 2, 0, 0, 1]])       # detected / projected / held
    take = _stub_take(bench, truth, other)
    found = bench.Found(boxes, np.ones((1, 7), bool), lambda v, t, b: None, source=source)
    iou = bench.box_iou(boxes, truth)
    scores = {"iou": iou, "other": np.where(np.arange(7) == 6, 1.0, 0.0)[None]}
    unsmoothed = boxes.copy()
    unsmoothed[0, 5] = truth[0, 5]
    got = bench.diagnose(take, found, scores, unsmoothed)
    assert got == {"detected: too big": 1, "detected: too small": 1,
                   "not found (projected): offset sideways": 1,
                   "detected: offset up/down": 1, "detected: smoothing": 1,
                   "not found (held): wrong person": 1}
    # Without the unsmoothed boxes that frame is an offset, and frames at the bar pass.
    got = bench.diagnose(take, found, scores)
    assert got["detected: offset up/down"] == 2 and "detected: smoothing" not in got
    assert sum(got.values()) == 6


def test_take_cache_renders_once_and_reads_the_same_take(tmp_path, monkeypatch):
    bench = _bench()
    calls = []

    def render(case, motion, seed, **kw):
        calls.append((case, motion, seed, kw["width"]))
        return _stub_take(bench, np.full((2, 3, 4), float(seed)))

    monkeypatch.setattr(bench, "render_take", render)
    kw = dict(frames=3, width=128, lighting="drift", noise=4.0, workdir=str(tmp_path))
    first = bench.cached_take("clutter", "walk", 1, cache_dir=str(tmp_path / "c"), **kw)
    again = bench.cached_take("clutter", "walk", 1, cache_dir=str(tmp_path / "c"), **kw)
    assert calls == [("clutter", "walk", 1, 128)]
    np.testing.assert_array_equal(again.truth, first.truth)
    assert isinstance(again, bench.Take) and again.case == "clutter"
    # Another render setting is another take; no cache directory renders every time.
    bench.cached_take("clutter", "walk", 1, cache_dir=str(tmp_path / "c"),
                      **{**kw, "width": 160})
    bench.cached_take("clutter", "walk", 1, **kw)
    assert len(calls) == 3
    assert not [p for p in os.listdir(tmp_path / "c") if ".tmp" in p]
