"""Generic rig converter on a miniature rig folder (tests/h36m_fixtures.py)."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from tests import h36m_fixtures as hf
from tfrecords_tools import crops, dataset_io, rig, schema, video

SIZE = 64


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return hf.build_rig_tree(str(tmp_path_factory.mktemp("rig")))


@pytest.fixture(scope="module")
def converted(tree, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("rig_mask_keep"))
    manifest = rig.convert(rig.RigConfig(tree.root, image_size=SIZE), out,
                           log_fn=lambda s: None)
    return manifest, {c.sequence_id: c for c in hf.read_clips(out)}


@pytest.fixture(scope="module")
def fixed_removed(tree, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("rig_fixed_remove"))
    rig.convert(rig.RigConfig(tree.root, sequences=("dance",), image_size=SIZE, crop="fixed",
                              background="remove"), out, log_fn=lambda s: None)
    return hf.read_clips(out)


def _person(tree, seq, cam_id, instant):
    return hf.person_mask(tree.joints[seq][instant], tree.cameras[seq][cam_id],
                          tree.subjects[seq]).astype(np.uint8)


# ---------------------------------------------------------------------------- metadata files


def _write(path, obj):
    with open(path, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


GOOD = {"fx": 500.0, "fy": 500.0, "cx": 99.5, "cy": 99.5, "width": 200, "height": 200,
        "rotation": np.eye(3).tolist(), "translation": [0, 0, 3000]}


@pytest.mark.parametrize("camera, message", [
    ({k: v for k, v in GOOD.items() if k != "fx"}, "lacks 'fx'"),
    ({**GOOD, "rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 2]]}, "not a rotation matrix"),
    ({**GOOD, "translation": [0, 0]}, r"'translation' has shape \[2\], expected \[3\]"),
    ({k: v for k, v in GOOD.items() if k not in ("rotation", "translation")}, "needs extrinsics"),
    ({**GOOD, "fx": "wide"}, "fx='wide' is not a number"),
])
def test_bad_calibration_names_the_field(tmp_path, camera, message):
    path = _write(tmp_path / "calibration.json", {"cameras": {"c0": camera}})
    with pytest.raises(rig.RigError, match=message):
        rig.load_calibration(path)


def test_calibration_forms_agree(tmp_path):
    q = [0.1407056, -0.1500702, -0.7552408, 0.6223280]
    centre = [1841.107, 4955.285, 1563.445]
    intr = {k: GOOD[k] for k in ("fx", "fy", "cx", "cy", "width", "height")}
    a = rig.load_calibration(_write(tmp_path / "a.json", {"cameras": {
        "c": {**intr, "q_cam_to_world": q, "centre": centre}}}))["c"]
    b = rig.load_calibration(_write(tmp_path / "b.json", {"cameras": {
        "c": {**intr, "rotation": a.rotation.tolist(), "translation": a.translation.tolist(),
              "distortion": [0.1, 0, 0, 0, 0]}}}))["c"]
    np.testing.assert_allclose(a.centre, centre, atol=1e-6)
    np.testing.assert_allclose(b.rotation, a.rotation)
    assert b.distortion[0] == 0.1
    with pytest.raises(rig.RigError, match="not a readable JSON"):
        rig.load_calibration(_write(tmp_path / "c.json", "{cameras:"))


@pytest.mark.parametrize("info, message", [
    ({"frame_offsets": {"a": -2}}, "integers >= 0"),
    ({"frame_offsets": {"a": 1.5}}, "integers >= 0"),
    ({"crop_boxes": {"a": [10, 10, 5, 30]}}, "x1 > x0"),
    ({"subjet": "P1"}, "keys among"),
])
def test_bad_sequence_info(tmp_path, info, message):
    with pytest.raises(rig.RigError, match=message):
        rig.load_sequence_info(_write(tmp_path / "sequence.json", info))


# ---------------------------------------------------------------------------- layouts


def test_bad_layouts_are_errors_or_listed_skips(tree, tmp_path):
    with pytest.raises(rig.RigError, match="not a directory"):
        rig.discover(rig.RigConfig(str(tmp_path / "missing")))
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(os.path.join(tree.root, "walk", "left.mp4"), flat / "cam0.mp4")
    with pytest.raises(rig.RigError, match="holds videos directly.*one level up"):
        rig.discover(rig.RigConfig(str(flat)))

    root = tmp_path / "rig"
    shutil.copytree(os.path.join(tree.root, "dance"), root / "good")
    shutil.copytree(os.path.join(tree.root, "dance"), root / "uncalibrated_cam")
    calib = json.load(open(root / "uncalibrated_cam" / "calibration.json"))
    del calib["cameras"]["back"]
    _write(root / "uncalibrated_cam" / "calibration.json", calib)
    (root / "one_camera").mkdir()
    shutil.copy(os.path.join(tree.root, "walk", "left.mp4"), root / "one_camera" / "a.mp4")
    shutil.copytree(os.path.join(tree.root, "walk"), root / "stray_offset")
    _write(root / "stray_offset" / "sequence.json", {"frame_offsets": {"front": 3}})
    specs, skipped = rig.discover(rig.RigConfig(str(root)))
    assert [s.name for s in specs] == ["good"]
    reasons = {s.item: s.reason for s in skipped}
    assert "calibration does not match the cameras found" in reasons["uncalibrated_cam"]
    assert "['back']" in reasons["uncalibrated_cam"]
    assert "1 video(s)" in reasons["one_camera"]
    assert "names cameras ['front'] without a video" in reasons["stray_offset"]
    with pytest.raises(rig.RigError, match=r"no sequence folders \['nope'\]"):
        rig.discover(rig.RigConfig(str(root), sequences=("nope",)))
    with pytest.raises(rig.RigError, match="no convertible sequence folder"):
        rig.discover(rig.RigConfig(str(root), sequences=("one_camera",)))


def test_unreadable_video_is_skipped_and_listed(tree, tmp_path):
    root = tmp_path / "rig"
    shutil.copytree(os.path.join(tree.root, "walk"), root / "walk")
    (root / "walk" / "right.mp4").write_bytes(hf.GARBAGE_VIDEO)
    config = rig.RigConfig(str(root), image_size=SIZE)
    specs, _ = rig.discover(config)
    items = list(rig.produce_sequence((config, specs[0])))
    assert not any(isinstance(i, schema.Clip) for i in items)
    reasons = {i.item: i.reason for i in items}
    assert "cannot be opened" in reasons["rig/walk.right"]
    assert "only 1 readable camera" in reasons["rig/walk"]


# ---------------------------------------------------------------------------- conversion


def test_records_are_synchronized_by_the_offsets(converted, tree):
    _, clips = converted
    clip = clips["P1/dance"]
    assert (clip.subject, clip.action, clip.joints3d_world) == ("P1", "Dance", None)
    assert clip.camera_ids == ["back", "left", "right"] and clip.has_background
    right, wrong = [], []
    for v, cam_id in enumerate(clip.camera_ids):
        off = tree.offsets["dance"][cam_id]
        frames = tree.frames["dance"][cam_id]
        for t, instant in enumerate(clip.frame_index):
            img = hf.decode(clip.images[t][v]).astype(float)
            box = clip.crop_boxes[t, v]
            right.append(np.abs(img - crops.crop_image(frames[instant + off], box, SIZE)).mean())
            shifted = min(instant + off + 4, len(frames) - 1)
            wrong.append(np.abs(img - crops.crop_image(frames[shifted], box, SIZE)).mean())
    assert np.max(right) < 12, np.max(right)
    assert np.mean(wrong) > 1.5 * np.mean(right), (np.mean(wrong), np.mean(right))


def test_cameras_from_calibration_or_placeholder(converted, tree):
    _, clips = converted
    dance, walk = clips["P1/dance"], clips["rig/walk"]
    for v, cam_id in enumerate(dance.camera_ids):
        cam, truth = hf.stored_camera(dance, v), tree.cameras["dance"][cam_id]
        np.testing.assert_allclose(cam.intrinsics, truth.intrinsics, atol=1e-3)
        np.testing.assert_allclose(cam.rotation, truth.rotation, atol=1e-6)
        np.testing.assert_allclose(cam.translation, truth.translation, atol=1e-2)
    np.testing.assert_allclose(walk.rotation, np.broadcast_to(np.eye(3), (2, 3, 3)))
    assert walk.subject == "rig" and walk.action == "walk"


def test_mask_boxes_frame_the_person(converted, tree):
    _, clips = converted
    inside, centred = [], []
    for seq, clip in ((s.split("/")[1], c) for s, c in clips.items()):
        for v, cam_id in enumerate(clip.camera_ids):
            for t, instant in enumerate(clip.frame_index):
                full = _person(tree, seq, cam_id, instant)
                box = clip.crop_boxes[t, v]
                assert abs((box[2] - box[0]) - (box[3] - box[1])) < 1e-3  # square
                crop = crops.crop_image(full, box, SIZE)
                # Crop area in original pixels, so the fraction is comparable to the frame's.
                area = ((box[2] - box[0]) / SIZE) ** 2
                inside.append(crop.sum() * area / full.sum())
                ys, xs = np.nonzero(crop)
                centred.append(np.hypot(xs.mean() - SIZE / 2, ys.mean() - SIZE / 2) / SIZE)
    assert np.median(inside) > 0.97, np.median(inside)
    assert np.median(centred) < 0.12, np.median(centred)


def test_still_frames_dropped_and_lengths_listed(converted):
    manifest, clips = converted
    kept = set(clips["P1/dance"].frame_index.tolist())
    a, b = hf.RIG_STILL
    assert a in kept and b in kept and not kept & set(range(a + 1, b))
    assert len(clips["rig/walk"].frame_index) == 36  # always moving: every frame kept
    reasons = {s["item"]: s["reason"] for s in manifest["skipped"]}
    assert "different lengths" in reasons["P1/dance frames 36..38"]
    assert "'back': 39" in reasons["P1/dance frames 36..38"]


def test_fixed_crops_and_background_removal(fixed_removed, tree):
    (clip,) = fixed_removed
    assert not clip.has_background
    np.testing.assert_allclose(clip.crop_boxes, np.broadcast_to([0, 0, 199, 199],
                                                                clip.crop_boxes.shape))
    kernel = np.ones((3, 3), np.uint8)
    dark, kept = [], []
    for v, cam_id in enumerate(clip.camera_ids):
        for t, instant in enumerate(clip.frame_index):
            mask = crops.crop_image(_person(tree, "dance", cam_id, instant),
                                    clip.crop_boxes[t, v], SIZE)
            img = hf.decode(clip.images[t][v]).max(-1)
            dark.append((img[cv2.dilate(mask, kernel) == 0] < 40).mean())
            kept.append((img[cv2.erode(mask, kernel) > 0] >= 40).mean())
    assert np.mean(dark) > 0.95, np.mean(dark)
    assert np.mean(kept) > 0.85, np.mean(kept)


def test_masked_median_ignores_person_boxes():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (7, 70, 9, 3)).astype(np.uint8)
    boxes = np.full((7, 4), np.nan)
    boxes[1], boxes[3] = [0, 0, 4, 200], [2, 10, 8, 50]
    valid = np.ones((7, 70, 9), bool)
    valid[1, :, 0:5], valid[3, 10:51, 2:9] = False, False
    ref = frames.astype(float)
    ref[~valid] = np.nan
    np.testing.assert_array_equal(video.masked_median(frames, boxes, rows_per_chunk=16),
                                  np.round(np.nanmedian(ref, 0)))
    everywhere = np.tile([0, 0, 8, 69.0], (7, 1))  # always covered: the plain median
    np.testing.assert_array_equal(video.masked_median(frames, everywhere),
                                  np.median(frames, 0).astype(np.uint8))


def test_video_ending_early_keeps_what_was_read(tree):
    path = os.path.join(tree.root, "walk", "left.mp4")  # 36 frames
    frames = np.array([[0], [20], [35], [40]])  # the container ends before frame 40
    steps = video.crop_timesteps([path], frames, np.tile([0, 0, 199, 199.0], (4, 1, 1)), 32)
    chunks = video.clip_chunks(steps, clip_length=2)
    assert [len(c) for _, c in [next(chunks), next(chunks)]] == [2, 1]
    with pytest.raises(video.VideoError, match="ends at frame 36, frame 40 was requested"):
        next(chunks)


@pytest.mark.large
def test_binary_and_inspector(tree, tmp_path):
    from tfrecords_tools import inspect
    from tfrecords_tools.runtime import cli
    out = str(tmp_path / "out")
    # The binary's flags, errors and exit code, in this process (no second TF start-up).
    code, stdout, err = cli.invoke("tfrecords_tools.rig", [
        f"--input_dir={tree.root}", f"--output_dir={out}", "--sequences=walk",
        "--image_size=48", "--subject=P7"])
    assert code == 0, err[-2000:]
    assert "wrote 1 records" in stdout
    report = inspect.inspect_dataset(out, None, log=lambda s: None)
    assert report.num_records == 1
    assert dataset_io.load_manifest(out)["images_per"]["subject"] == {"P7": 72}
