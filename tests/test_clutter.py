"""Generator clutter (bystanders, moving objects, lighting, noise, textured room) and the
metric functions of benchmarks/bench_person_boxes.py on hand-made cases."""
import dataclasses
import importlib.util
import os
import sys

import numpy as np
import pytest

from tfrecords_tools import cameras, crops, dataset_io, h36m_calibration, synthesize
from tfrecords_tools.synth import body, clutter, motion, render, scene

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench():
    """benchmarks/bench_person_boxes.py as a module (benchmarks/ is not a package)."""
    name = "bench_person_boxes"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(REPO, "benchmarks", "bench_person_boxes.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while being defined
        spec.loader.exec_module(module)
    return sys.modules[name]


def _small_rig(width=96):
    return [h36m_calibration.scale_camera(c, width, width) for c in cameras.h36m_rig()]


def _take(frames=6):
    subject = body.make_subject("S9")
    joints = motion.generate_motion(subject, "Walking", frames, np.random.default_rng(0))
    return subject, joints


# ----------------------------------------------------------------------------- generator

def test_default_config_has_no_clutter_and_no_clutter_settings():
    cfg = synthesize.SynthConfig()
    assert not cfg.has_clutter
    assert not set(synthesize.CLUTTER_DEFAULTS) & set(synthesize.settings_of(cfg))
    on = dataclasses.replace(cfg, background=True, sensor_noise=3.0)
    assert on.has_clutter and synthesize.settings_of(on)["sensor_noise"] == 3.0


def test_empty_clutter_renders_the_same_pixels():
    subject, joints = _take()
    rig = cameras.h36m_rig()
    boxes = synthesize.crop_boxes(joints, rig, 0.2, 0.0, np.random.default_rng(0))
    plain = [img.copy() for *_, img in render.iter_render(joints, rig, subject, boxes, 32)]
    empty = [img.copy() for *_, img in render.iter_render(joints, rig, subject, boxes, 32,
                                                          clutter=clutter.TakeClutter())]
    for a, b in zip(plain, empty):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kw, match", [
    (dict(bystanders=1), "--bystanders: clutter needs --background"),
    (dict(background=True, lighting="flicker"), "--lighting"),
    (dict(background=True, bystanders=9), "--bystanders"),
    (dict(background=True, sensor_noise=-1.0), "--sensor_noise"),
    (dict(background=True, moving_objects=99), "--moving_objects"),
])
def test_bad_clutter_settings_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        synthesize.validate(synthesize.SynthConfig(subjects=("S1",), **kw))


def test_cluttered_dataset_keeps_the_labels_and_changes_the_pixels(tmp_path):
    base = synthesize.SynthConfig(subjects=("S1",), actions=("Walking",), takes=1,
                                  num_frames=24, image_size=32, clip_length=16, seed=2,
                                  background=True, cameras=tuple(_small_rig(160)))
    busy = dataclasses.replace(base, bystanders=1, moving_objects=2, lighting="switch",
                               sensor_noise=4.0, textured_room=True)
    a, b = str(tmp_path / "plain"), str(tmp_path / "busy")
    for d, cfg in ((a, base), (b, busy)):
        synthesize.generate(d, cfg, log=lambda s: None)
    import tensorflow as tf
    from tfrecords_tools import schema
    clips = [[schema.decode_clip(r.numpy()) for p in dataset_io.shard_paths(d)
              for r in tf.data.TFRecordDataset(p)] for d in (a, b)]
    assert len(clips[0]) == len(clips[1])
    for x, y in zip(*clips):
        np.testing.assert_array_equal(x.joints3d_world, y.joints3d_world)
        np.testing.assert_array_equal(x.crop_boxes, y.crop_boxes)
        assert x.images != y.images
    assert dataset_io.load_manifest(b)["settings"]["lighting"] == "switch"


def test_bystander_is_in_the_frame_but_not_in_the_truth_mask():
    subject, joints = _take()
    rig = _small_rig()
    plan = clutter.plan_take(joints, np.random.default_rng(5), bystanders=1)
    (other, other_joints), = plan.people
    assert other.name != subject.name
    black = [np.zeros((c.height, c.width, 3), np.uint8) for c in rig]
    alone = {(t, v): img.copy() for t, v, img in render.iter_frames(joints, rig, subject, black)}
    both = {(t, v): img.copy()
            for t, v, img in render.iter_frames(joints, rig, subject, black, plan)}
    sil = _bench().silhouettes(joints, rig, subject)
    extra = 0
    for (t, v), img in both.items():
        # Pixels drawn only with the bystander present, away from the main person.
        new = (img.max(-1) > 0) & (alone[t, v].max(-1) == 0)
        assert not (new & sil[v][t]).any()
        extra += int(new.sum())
        # The truth mask is the main person exactly where they are drawn alone.
        assert sil[v][t].sum() > 0
        assert ((alone[t, v].max(-1) > 0) | ~sil[v][t]).all()
    assert extra > 50  # the bystander is visible


def test_lighting_and_noise_change_the_pixels():
    drift = clutter.plan_take(np.zeros((50, 17, 3)), np.random.default_rng(1), lighting="drift")
    np.testing.assert_allclose(drift.gain[0], 1.0)
    assert np.abs(drift.gain[-1] - 1).max() > 0.1
    switch = clutter.plan_take(np.zeros((50, 17, 3)), np.random.default_rng(1),
                               lighting="switch")
    steps = np.abs(np.diff(switch.gain[:, 0]))
    assert (steps > 0).sum() <= 4 and steps.sum() > 0.1  # one quick change
    img = np.full((40, 40, 3), 100, np.uint8)
    lit = img.copy()
    clutter.apply_camera(lit, clutter.TakeClutter(gain=np.array([[1.0, 1.0, 1.2]])), 0, 0)
    np.testing.assert_array_equal(lit[..., 0], 120)  # BGR: blue channel, the third gain
    np.testing.assert_array_equal(lit[..., 1:], 100)
    noisy = img.copy()
    clutter.apply_camera(noisy, clutter.TakeClutter(noise=5.0, noise_seed=3), 0, 0)
    assert 4.0 < (noisy.astype(float) - 100).std() < 6.0
    again = img.copy()
    clutter.apply_camera(again, clutter.TakeClutter(noise=5.0, noise_seed=3), 0, 1)
    assert (again != noisy).any()  # another view, other noise


def test_textured_room_differs_only_when_asked():
    cam = _small_rig(64)[0]
    plain = scene.render_background(cam, 0)
    np.testing.assert_array_equal(plain, scene.render_background(cam, 0, textured=False))
    textured = scene.render_background(cam, 0, textured=True)
    assert np.abs(textured.astype(int) - plain).mean() > 5


# ----------------------------------------------------------------------------- metrics

def test_box_metrics_on_hand_made_boxes():
    bench = _bench()
    a = np.array([0.0, 0, 10, 10])
    np.testing.assert_allclose(bench.box_iou(a, a), 1.0)
    np.testing.assert_allclose(bench.box_iou(a, [5.0, 0, 15, 10]), 50 / 150)
    np.testing.assert_allclose(bench.box_iou(a, [20.0, 20, 30, 30]), 0.0)
    joints = np.array([[[1.0, 1], [9, 9]], [[1.0, 1], [11, 9]]])
    np.testing.assert_array_equal(bench.joints_inside(np.stack([a, a]), joints), [True, False])
    sil = np.zeros((4, 4), bool)
    sil[:2] = True
    keep = np.zeros((4, 4), bool)
    keep[0] = True
    assert bench.kept_share(sil, keep) == 0.5
    assert np.isnan(bench.kept_share(np.zeros((4, 4), bool), keep))


def test_cross_view_error_is_zero_for_consistent_boxes_and_scales_with_height():
    bench = _bench()
    rig = cameras.h36m_rig()
    point = np.array([300.0, -200.0, 900.0])
    centres = np.stack([c.project(point) for c in rig])
    np.testing.assert_allclose(bench.triangulate(centres, np.stack(
        [bench.projection_matrix(c) for c in rig])), point, atol=1e-6)
    boxes = np.concatenate([centres - 50, centres + 50], -1)[:, None]  # [V, 1, 4]
    np.testing.assert_allclose(bench.cross_view_error(boxes, rig), 0.0, atol=1e-9)
    # One view's box moved by a tenth of that view's 1.8 m-person height: an error of the
    # right size appears (the triangulation spreads it over the views).
    h = bench.person_height_px(rig[0], point[:2])
    moved = boxes.copy()
    moved[0, 0, [0, 2]] += 0.1 * h
    err = bench.cross_view_error(moved, rig)
    assert 0.02 < err[0, 0] < 0.1 and err.max() < 0.1
    assert h > 0 and np.isclose(bench.person_height_px(rig[0], point[:2]), h)


def test_truth_box_follows_the_crop_margin_rule():
    bench = _bench()
    subject, joints = _take(2)
    rig = _small_rig(128)
    sil = bench.silhouettes(joints, rig, subject)
    ys, xs = np.nonzero(sil[0][0])
    box = crops.square_box(np.array([[xs.min(), ys.min()], [xs.max(), ys.max()]], float),
                           bench.MARGIN)
    j2d = rig[0].project(joints[0])
    # The exact box holds every joint of that frame, and its side is 1.4 x the silhouette's
    # longer extent.
    assert bench.joints_inside(box[None], j2d[None])[0]
    np.testing.assert_allclose(box[2] - box[0], 1.4 * max(xs.max() - xs.min(),
                                                          ys.max() - ys.min()))


def test_benchmark_scores_a_tiny_take(tmp_path):
    """End to end on a tiny take: the exact boxes score perfectly, today's path runs."""
    bench = _bench()
    take = bench.render_take("two_people", "walk", 0, frames=12, width=128, lighting="drift",
                             noise=4.0, workdir=str(tmp_path))
    assert len(take.frames) == 4 and take.frames[0].shape == (12, 128, 128, 3)
    exact = bench.Found(np.nan_to_num(take.truth), np.ones(take.truth.shape[:2], bool),
                        lambda v, t, box: np.ones((bench.CROP_SIZE,) * 2, bool))
    s = bench.summarise([bench.score_take(take, exact)])
    assert s["view_frames"] > 0 and s["iou_share"] == 1.0 and s["kept_median"] == 1.0
    assert s["joints_share"] > 0.9
    assert s["cross_median"] == s["cross_truth_median"] < 0.05
    assert s["other_share"] == 0.0
    # Boxing the bystander instead is caught as such.
    wrong = bench.Found(np.nan_to_num(take.other_truth), np.ones(take.truth.shape[:2], bool),
                        exact.keep)
    w = bench.summarise([bench.score_take(take, wrong)])
    assert w["other_share"] > 0.2 and w["iou_share"] < 1.0
    base = bench.summarise([bench.score_take(take, bench.baseline_boxes(take))])
    assert 0 <= base["iou_share"] <= 1 and np.isfinite(base["cross_median"])
    assert "boxes = baseline" in bench.markdown([{"case": "two_people", "motion": "walk",
                                                  "summary": base}], "baseline")
