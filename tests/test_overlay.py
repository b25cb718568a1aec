"""tf_synchro.deploy.overlay: the skeleton drawn on the person, One-Euro smoothing, output files."""
import dataclasses
import json

import numpy as np
import pytest

from tests import h36m_fixtures as hf
from tf_synchro.deploy import overlay
from tfrecords_tools import crops, skeleton
from tfrecords_tools.runtime import cli

MARGIN = 0.2
K = (1100.0, 1090.0, 512.0, 380.0)  # fx, fy, cx, cy


def _person(seed=0):
    """Root-relative camera-frame joints [17, 3] mm of a standing, slightly turned person."""
    rng = np.random.default_rng(seed)
    # Template in the camera frame (x right, y down, z forward): pelvis at 0, head at -750.
    j = np.array([[0, 0, 0], [-100, 0, 0], [-110, 420, 20], [-100, 830, 0], [100, 0, 0],
                  [110, 420, -20], [100, 830, 0], [0, -250, 0], [0, -500, 0], [0, -600, 0],
                  [0, -750, 0], [170, -500, 0], [250, -250, 60], [300, -20, 100],
                  [-170, -500, 0], [-240, -260, -50], [-280, -40, -90]], float)
    a = rng.uniform(-0.6, 0.6)  # Turn about the vertical (y) axis.
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return j @ rot.T + rng.normal(0, 15, j.shape) * (np.arange(17) > 0)[:, None]


def test_weak_perspective_fit_lands_on_the_orthographic_render():
    """Joints rendered orthographically at a known scale and place; the crop box made
    around them as the converters do; the fit puts every joint back on its pixel."""
    for seed, (scale, offset) in enumerate([(0.3, (420.0, 260.0)), (0.08, (40.0, 900.0)),
                                            (1.2, (-50.0, 10.0))]):
        joints = _person(seed)
        pixels = np.asarray(offset) + scale * joints[:, :2]
        box = crops.square_box(pixels, margin=MARGIN)
        drawn = overlay.fit_to_box(joints, box, MARGIN)
        np.testing.assert_allclose(drawn, pixels, atol=1e-6)
        # The depth axis plays no part; another margin draws another (wrong) size.
        np.testing.assert_allclose(overlay.fit_to_box(joints * [1, 1, 5], box, MARGIN), pixels,
                                   atol=1e-6)
        wrong = overlay.fit_to_box(joints, box, 0.0)
        assert np.abs(wrong - pixels).max() > 5 * scale


def test_perspective_placement_lands_on_the_pinhole_render():
    """Joints at a known root position seen through known intrinsics: placing the root from
    the box alone reproduces the projection (and the position)."""
    for seed, root in enumerate([(300.0, -100.0, 4500.0), (-1500.0, 400.0, 2500.0),
                                 (2000.0, 900.0, 9000.0)]):
        joints = _person(seed)
        pixels = overlay.project(joints + root, K)
        box = crops.square_box(pixels, margin=MARGIN)
        found_root, drawn = overlay.place_in_camera(joints, box, MARGIN, K)
        np.testing.assert_allclose(drawn, pixels, atol=0.01)
        np.testing.assert_allclose(found_root, root, atol=2.0)  # mm
        np.testing.assert_allclose(overlay.skeleton_pixels(joints, box, MARGIN, K), drawn)
        # Weak perspective on a perspective render: close, not exact (the depth differences).
        assert np.abs(overlay.fit_to_box(joints, box, MARGIN) - pixels).max() < 0.1 * (
            box[2] - box[0])


def test_overlay_skeleton_is_drawn_on_the_rendered_person():
    """A rendered frame (pinhole camera), its converter-style box: the drawn skeleton lies on
    the person, in both modes; the box centre is inside it."""
    person = hf.fixture_subject(0)
    cam = dataclasses.replace(hf.fixture_camera("S9", "55011271", 160, 160),
                              distortion=np.zeros(5))
    world = hf.make_motion(person, 3, 1, "Walking")[0]
    frame = hf.render_frame(world, cam, person, None)
    truth = cam.project(world)
    box = crops.square_box(truth, margin=MARGIN)
    joints = skeleton.root_relative(cam.world_to_camera(world))
    intrinsics = (cam.fx, cam.fy, cam.cx, cam.cy)
    np.testing.assert_allclose(overlay.skeleton_pixels(joints, box, MARGIN, intrinsics),
                               truth, atol=0.05)
    mask = frame.max(-1) > 0
    for k in (None, intrinsics):
        drawn = overlay.draw_overlay(frame, box, joints, True, MARGIN, k)
        changed = np.abs(drawn.astype(int) - frame).max(-1) > 0
        x0, y0, x1, y1 = np.round(box).astype(int)
        inner = np.zeros_like(changed)
        inner[y0 + 3:y1 - 2, x0 + 3:x1 - 2] = True  # Inside the rectangle's outline.
        lines = changed & inner
        ys, xs = np.nonzero(lines)
        centre = np.array([xs.mean(), ys.mean()])
        assert box[0] < centre[0] < box[2] and box[1] < centre[1] < box[3], (k, centre, box)
        # Most skeleton pixels lie on the rendered body (its limbs are wider than a line).
        assert (mask & lines).sum() > 0.7 * lines.sum(), k
    # The skeleton's centre is the body's, not beside it (the bug).
    uv = overlay.fit_to_box(joints, box, MARGIN)
    body = np.array(np.nonzero(mask)[::-1]).mean(1)
    assert np.linalg.norm(uv.mean(0) - body) < 0.1 * (box[2] - box[0])


def test_one_euro_filter_reduces_jitter_and_follows_a_step():
    rng = np.random.default_rng(0)
    fps = 50.0
    noisy = 1000.0 + rng.normal(0, 10, (200, 17, 3))  # mm, a joint that does not move
    # The predict binary's defaults (PredictConfig.smooth_*).
    out = overlay.smooth(noisy, fps, min_cutoff=1.0, beta=0.004, d_cutoff=1.0)
    assert out.shape == noisy.shape
    assert out[50:].std() < 0.35 * noisy[50:].std()
    assert abs(out[50:].mean() - 1000.0) < 2.0
    # A 500 mm step at frame 20: within 5 frames (0.1 s) the filter is within 5% of it.
    step = np.where(np.arange(60) < 20, 0.0, 500.0)[:, None]
    followed = overlay.smooth(step, fps, 1.0, 0.004, 1.0)[:, 0]
    assert followed[19] == 0.0 and followed[25] > 475.0
    assert followed[20] < 500.0  # ... and it does lag: it is a filter.
    # Without the speed term (beta = 0) the same step takes far longer.
    slow = overlay.smooth(step, fps, 1.0, 0.0, 1.0)[:, 0]
    assert slow[25] < 400.0
    with pytest.raises(ValueError, match="min_cutoff=0"):
        overlay.OneEuroFilter(fps, min_cutoff=0.0)


def test_intrinsics_from_numbers_or_calibration_json(tmp_path):
    np.testing.assert_allclose(overlay.read_intrinsics("1100,1090,512,380.5"),
                               [1100, 1090, 512, 380.5])
    path = tmp_path / "calibration.json"
    cam = {"fx": 1145.0, "fy": 1143.8, "cx": 512.5, "cy": 515.5, "width": 1000,
           "height": 1002, "rotation": np.eye(3).tolist(), "translation": [0, 0, 5000]}
    path.write_text(json.dumps({"cameras": {"cam_left": cam, "cam_right": dict(cam, fx=9.0)}}))
    np.testing.assert_allclose(overlay.read_intrinsics(str(path), "cam_left"),
                               [1145.0, 1143.8, 512.5, 515.5])
    with pytest.raises(cli.DataError, match="no camera 'other'"):
        overlay.read_intrinsics(str(path), "other")
    single = tmp_path / "one.json"
    single.write_text(json.dumps({"cameras": {"c": cam}}))
    assert overlay.read_intrinsics(str(single), "any")[0] == 1145.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cameras": {"c": {"fx": "x"}}}))
    with pytest.raises(cli.DataError, match="expected a calibration.json"):
        overlay.read_intrinsics(str(bad))
    for spec in ("1,2,3", "0,1,2,3", str(tmp_path / "missing.json")):
        with pytest.raises(cli.UsageError, match="--intrinsics="):
            overlay.read_intrinsics(spec)


def test_output_files_carry_the_same_information(tmp_path):
    n = 3
    result = {"units": "mm", "fps": 25.0, "smoothing": None, "model": "m",
              "joints3d": np.ones((n, 17, 3), np.float32),
              "joints3d_raw": np.zeros((n, 17, 3), np.float32),
              "boxes": np.tile([1.0, 2.0, 11.0, 12.0], (n, 1)),
              "person_found": np.array([True, False, True]), "names": ["a", "b", "c"]}
    overlay.write_output(str(tmp_path / "p.npz"), result)
    overlay.write_output(str(tmp_path / "p.json"), result)
    npz = np.load(tmp_path / "p.npz")
    assert sorted(npz.files) == ["boxes", "info", "joint_names", "joints3d", "joints3d_raw",
                                 "names", "person_found"]
    assert json.loads(str(npz["info"])) == {"units": "mm", "fps": 25.0, "smoothing": None,
                                            "model": "m"}
    doc = json.load(open(tmp_path / "p.json"))
    assert doc["fps"] == 25.0 and len(doc["frames"]) == n
    assert doc["frames"][1] == {"index": 1, "name": "b", "box": [1.0, 2.0, 11.0, 12.0],
                                "person_found": False, "joints3d": [[1.0] * 3] * 17,
                                "joints3d_raw": [[0.0] * 3] * 17}
