"""Human3.6M converter on a miniature Human3.6M tree (tests/h36m_fixtures.py)."""
import dataclasses
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests import h36m_fixtures as hf
from tfrecords_tools import (cameras, crops, dataset_io, h36m, h36m_calibration,
                             motion_filter, schema)

SIZE = 64  # stored crop side in these tests (small: fast)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return hf.build_h36m_tree(str(tmp_path_factory.mktemp("h36m")))


@pytest.fixture(scope="module")
def keep_config(tree):
    return h36m.H36MConfig(tree.root, image_size=SIZE)


@pytest.fixture(scope="module")
def converted(tree, keep_config, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("h36m_keep"))
    manifest = h36m.convert(keep_config, out, log_fn=lambda s: None)
    return out, manifest, hf.read_clips(out)


@pytest.fixture(scope="module")
def removed(tree, tmp_path_factory):
    # Only the 48-frame take: in it the person walks clear of every spot, which a median
    # background needs (short takes where someone stays put cannot be cleaned, by design).
    out = str(tmp_path_factory.mktemp("h36m_remove"))
    config = h36m.H36MConfig(tree.root, subjects=("S1",), actions=("Directions",),
                             image_size=SIZE, background="remove")
    h36m.convert(config, out, log_fn=lambda s: None)
    return hf.read_clips(out)


# ---------------------------------------------------------------------------- calibration


def test_s1_calibration_reproduces_design_values():
    for cam_id in h36m_calibration.CAMERA_IDS:
        q, c = h36m_calibration.EXTRINSICS["S1"][cam_id]
        q_ref, c_ref = cameras.H36M_S1_EXTRINSICS[cam_id]
        np.testing.assert_allclose(q, q_ref, atol=1e-6)
        np.testing.assert_allclose(c, c_ref, atol=1e-2)


@pytest.mark.parametrize("subject", h36m_calibration.SUBJECTS)
def test_every_subject_has_a_plausible_rig(subject):
    rig = h36m_calibration.rig(subject)
    for cam in rig:
        np.testing.assert_allclose(cam.rotation @ cam.rotation.T, np.eye(3), atol=1e-6)
        assert 4000 < np.linalg.norm(cam.centre[:2]) < 6000  # cameras ~5 m from the centre
        # A standing person at the origin is in view, upright (head above feet in the image).
        feet, head = cam.project(np.array([[0, 0, 0], [0, 0, 1700.0]]))
        assert 0 < feet[0] < cam.width and 0 < head[1] < feet[1] < cam.height
        assert np.any(cam.distortion != 0)
    # Extrinsics differ per subject (the rig was re-assembled), except for S1 itself.
    if subject != "S1":
        assert not np.allclose(rig[0].translation, h36m_calibration.rig("S1")[0].translation)


def test_unknown_subject_or_camera_is_a_clear_error():
    with pytest.raises(h36m_calibration.CalibrationError, match="S2.*covers"):
        h36m_calibration.camera("S2", "54138969")
    with pytest.raises(h36m_calibration.CalibrationError, match="unknown Human3.6M camera"):
        h36m_calibration.camera("S1", "123")


def test_scale_camera_keeps_pixel_centres():
    cam = dataclasses.replace(h36m_calibration.camera("S5", "55011271"),
                              distortion=np.zeros(5))
    small = h36m_calibration.scale_camera(cam, 250, 125)
    p = np.array([[300.0, -200.0, 900.0]])
    u, v = cam.project(p)[0]
    np.testing.assert_allclose(small.project(p)[0],
                               [(u + 0.5) * 250 / 1000 - 0.5, (v + 0.5) * 125 / 1000 - 0.5],
                               atol=1e-9)


# ---------------------------------------------------------------------------- names, CDF


@pytest.mark.parametrize("stem, expected", [
    ("Directions 1", ("Directions", "1")), ("Directions", ("Directions", "")),
    ("Photo 1", ("TakingPhoto", "1")), ("TakingPhoto", ("TakingPhoto", "")),
    ("WalkDog", ("WalkingDog", "")), ("WalkingDog 1", ("WalkingDog", "1")),
    ("WalkTogether 2", ("WalkTogether", "2")), ("SittingDown 2", ("SittingDown", "2")),
])
def test_sequence_names_are_canonicalised(stem, expected):
    assert h36m.parse_stem(stem) == expected


def test_bad_stem_is_rejected():
    with pytest.raises(h36m.H36MError, match="not a Human3.6M sequence name"):
        h36m.parse_stem("Walking.backup")


def test_load_poses_picks_the_17_joints(tmp_path):
    joints = np.random.default_rng(0).normal(0, 500, (5, 17, 3))
    path = str(tmp_path / "Walking.cdf")
    hf.write_pose_cdf(path, joints)
    np.testing.assert_allclose(h36m.load_poses(path), joints, atol=1e-3)  # float32 in the file


def test_load_poses_rejects_wrong_shape_and_non_cdf(tmp_path):
    from cdflib.cdfwrite import CDF
    path = str(tmp_path / "Eating.cdf")
    cdf = CDF(path, cdf_spec={"Majority": "Row_major", "Compressed": 0})
    cdf.write_var({"Variable": "Pose", "Data_Type": CDF.CDF_DOUBLE, "Num_Elements": 1,
                   "Rec_Vary": True, "Dim_Sizes": [4, 90]}, var_data=np.zeros((1, 4, 90)))
    cdf.close()
    with pytest.raises(h36m.H36MError, match=r"shape \[1, 4, 90\], expected \[1, T, 96\]"):
        h36m.load_poses(path)
    junk = tmp_path / "Sitting.cdf"
    junk.write_bytes(b"not a cdf at all")
    with pytest.raises(h36m.H36MError, match="not a readable CDF"):
        h36m.load_poses(str(junk))


# ---------------------------------------------------------------------------- discovery


def test_bad_roots_and_settings_are_clear_errors(tmp_path, tree):
    with pytest.raises(h36m.H36MError, match="is not a directory"):
        h36m.discover(h36m.H36MConfig(str(tmp_path / "nope")))
    (tmp_path / "videos").mkdir()
    with pytest.raises(h36m.H36MError, match="no subject folders.*official layout"):
        h36m.discover(h36m.H36MConfig(str(tmp_path)))
    (tmp_path / "S1").mkdir()
    with pytest.raises(h36m.H36MError, match="nothing to convert.*missing"):
        h36m.discover(h36m.H36MConfig(str(tmp_path), subjects=("S1",)))
    with pytest.raises(h36m.H36MError, match="cameras"):
        h36m.H36MConfig(tree.root, cameras=("54138969", "999"))
    with pytest.raises(h36m.H36MError, match="not Human3.6M actions"):
        h36m.H36MConfig(tree.root, actions=("Dancing",))
    with pytest.raises(h36m.H36MError, match="background"):
        h36m.H36MConfig(tree.root, background="blur")


def test_discovery_filters_and_quirk_switches(tree):
    specs, _ = h36m.discover(h36m.H36MConfig(tree.root, actions=("WalkDog",)))
    assert [s.sequence_id for s in specs] == ["S9/WalkDog 1"]
    assert specs[0].action == "WalkingDog"
    specs, _ = h36m.discover(h36m.H36MConfig(tree.root, subjects=("S9",), include_damaged=True))
    assert {s.sequence_id for s in specs} == {"S9/Greeting", "S9/WalkDog 1"}
    specs, _ = h36m.discover(h36m.H36MConfig(tree.root, subjects=("S1",),
                                             cameras=("58860488", "54138969")))
    assert [c for c, _ in specs[0].videos] == ["58860488", "54138969"]  # flag order kept


# ---------------------------------------------------------------------------- conversion


def test_manifest_lists_every_quirk(converted):
    _, manifest, clips = converted
    skipped = {s["item"]: s["reason"] for s in manifest["skipped"]}
    assert "damaged" in skipped["S9/Greeting"]
    assert "known corrupt" in skipped["S11/Directions.54138969"]
    assert "video missing" in skipped["S1/TakingPhoto.60457274"]
    assert "cannot be opened" in skipped["S1/TakingPhoto.58860488"]  # found while converting
    assert "no variable 'Pose'" in skipped["S11/Phoning"]
    assert "'poses': 24" in skipped["S11/Directions frames 20..23"]
    assert "'60457274': 20" in skipped["S11/Directions frames 20..23"]
    assert "no folder" in skipped["S5"]
    assert sorted(s["file"] for s in manifest["shards"]) == [
        "S11_Directions.tfrecord", "S1_Directions_1.tfrecord", "S1_TakingPhoto.tfrecord",
        "S9_WalkDog_1.tfrecord"]
    for shard in manifest["shards"]:  # one subject per shard
        assert len(shard["images_per"]["subject"]) == 1
    assert set(manifest["images_per"]["action"]) == {"Directions", "TakingPhoto", "WalkingDog"}
    by_id = {c.sequence_id: c for c in clips}
    assert by_id["S11/Directions"].camera_ids == ["55011271", "58860488", "60457274"]
    assert by_id["S11/Directions"].frame_index.max() == 19  # truncated to the shortest video
    assert by_id["S1/TakingPhoto"].camera_ids == ["54138969", "55011271"]
    assert by_id["S9/WalkDog 1"].action == "WalkingDog"


def test_records_match_labels_geometry_and_pixels(converted, tree):
    _, _, clips = converted
    hits, total, errors = 0, 0, []
    for clip in clips:
        seq = clip.sequence_id
        assert clip.subject == seq.split("/")[0] and clip.fps == 50.0 and clip.has_background
        assert clip.image_size == SIZE
        np.testing.assert_allclose(clip.joints3d_world, tree.joints[seq][clip.frame_index],
                                   atol=1e-2)
        for v, cam_id in enumerate(clip.camera_ids):
            truth = tree.cameras[seq][cam_id]
            cam = hf.stored_camera(clip, v)
            np.testing.assert_allclose(cam.intrinsics, truth.intrinsics, atol=1e-3)
            np.testing.assert_allclose(cam.rotation, truth.rotation, atol=1e-6)
            np.testing.assert_allclose(cam.translation, truth.translation, atol=1e-2)
            np.testing.assert_allclose(cam.distortion, truth.distortion, atol=1e-7)
            assert tuple(clip.image_wh[v]) == (hf.VIDEO_SIZE, hf.VIDEO_SIZE)
            for t, frame in enumerate(clip.frame_index):
                box = clip.crop_boxes[t, v]
                uv = crops.image_to_crop(cam.project(clip.joints3d_world[t]), box, SIZE)
                uv_true = crops.image_to_crop(truth.project(tree.joints[seq][frame]), box, SIZE)
                errors.append(np.abs(uv - uv_true).max())
                assert uv.min() >= 0 and uv.max() < SIZE  # every joint inside the crop
                # Where the renderer drew the body: each projected joint lands on it.
                mask = crops.crop_image(hf.person_mask(tree.joints[seq][frame], truth,
                                                       tree.subjects[seq]).astype(np.uint8),
                                        box, SIZE)
                px = np.clip(np.round(uv).astype(int), 0, SIZE - 1)
                hits += mask[px[:, 1], px[:, 0]].sum()
                total += len(px)
                # The stored crop is that frame of that camera, cropped along the box, in RGB.
                expected = crops.crop_image(tree.frames[seq][cam_id][frame], box, SIZE)
                mae = np.abs(hf.decode(clip.images[t][v]).astype(float) - expected).mean()
                assert mae < 12, (seq, cam_id, frame, mae)
    assert max(errors) < 0.05  # stored geometry reproduces the fixture's own projection
    assert hits / total > 0.95, hits / total


def test_colour_order_is_rgb(converted):
    _, _, clips = converted
    img = hf.decode(clips[0].images[0][0]).astype(int)
    corners = np.concatenate([img[:6, :6].reshape(-1, 3), img[-6:, -6:].reshape(-1, 3)])
    red, _, blue = corners.mean(0)
    assert red > blue + 60  # the fixture background is red; BGR content would read blue


def test_still_frames_are_dropped_keeping_indices(converted, tree, keep_config):
    _, _, clips = converted
    clip = next(c for c in clips if c.sequence_id == "S1/Directions 1")
    a, b = tree.still["S1/Directions 1"]
    kept = set(clip.frame_index.tolist())
    assert a in kept and b in kept and not kept & set(range(a + 1, b))
    expected = motion_filter.moving_frames_3d(tree.joints["S1/Directions 1"],
                                              keep_config.motion_threshold_mm)
    np.testing.assert_array_equal(clip.frame_index, np.flatnonzero(expected))


def test_background_removal_removes_scene_keeps_person(removed, tree):
    assert removed and all(not c.has_background for c in removed)
    kernel = np.ones((5, 5), np.uint8)
    bg_dark, person_kept = [], []
    for clip in removed:
        seq = clip.sequence_id
        for v, cam_id in enumerate(clip.camera_ids):
            for t, frame in enumerate(clip.frame_index):
                box = clip.crop_boxes[t, v]
                mask = crops.crop_image(hf.person_mask(tree.joints[seq][frame],
                                                       tree.cameras[seq][cam_id],
                                                       tree.subjects[seq]).astype(np.uint8),
                                        box, SIZE, border_value=0)
                inside = crops.crop_image(np.ones((hf.VIDEO_SIZE, hf.VIDEO_SIZE), np.uint8),
                                          box, SIZE)
                img = hf.decode(clip.images[t][v]).max(-1)
                # Judge away from the outline (blended by resampling and compression).
                scene = (cv2.dilate(mask, kernel) == 0) & (inside > 0)
                body = cv2.erode(mask, kernel) > 0
                bg_dark.append((img[scene] < 40).mean())
                person_kept.append((img[body] >= 40).mean())
    assert np.mean(bg_dark) > 0.95, np.mean(bg_dark)
    assert np.mean(person_kept) > 0.9, np.mean(person_kept)


def test_frame_step_and_clip_length(tree):
    config = h36m.H36MConfig(tree.root, subjects=("S1",), frame_step=2, clip_length=8,
                             motion_threshold_mm=0, image_size=SIZE)
    specs, _ = h36m.discover(config)
    spec = next(s for s in specs if s.stem == "Directions 1")
    clips = [c for c in h36m.produce_sequence((config, spec)) if isinstance(c, schema.Clip)]
    assert [c.clip_index for c in clips] == [0, 1, 2]
    np.testing.assert_array_equal(np.concatenate([c.frame_index for c in clips]),
                                  np.arange(0, 48, 2))  # 50 fps frame numbers, not 0..23


def test_resume_skips_done_shards_and_refuses_other_settings(converted, keep_config):
    out, _, _ = converted
    shards = sorted(p for p in os.listdir(out) if p.endswith(".tfrecord"))
    mtimes = {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in shards}
    lines = []
    h36m.convert(keep_config, out, log_fn=lines.append)
    assert any(f"resuming: {len(shards)} of {len(shards)}" in line for line in lines)
    assert mtimes == {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in shards}
    with pytest.raises(dataset_io.DatasetError, match="image_size"):
        h36m.convert(dataclasses.replace(keep_config, image_size=96), out, log_fn=lambda s: None)


def test_pipelines_read_the_records(converted):
    from tf_synchro.data import frames, pairs, records
    out, _, _ = converted
    files = records.dataset_files(out)
    assert pairs.check_records(files, pairs.PairConfig())["usable"] == 4
    batch = next(iter(pairs.pair_dataset(files, pairs.PairConfig(seed=0, passes=1), 4)))
    assert batch is not None
    config = frames.FrameConfig(subjects=("S1", "S9", "S11"), frame_step=1)
    images, joints, _ = next(iter(frames.eval_dataset(files, config, 4)))
    assert joints.shape == (4, 17, 3)


@pytest.mark.large
def test_binary_and_inspector(tree, tmp_path):
    from tfrecords_tools import inspect
    out = str(tmp_path / "out")
    cmd = [sys.executable, "-m", "tfrecords_tools.h36m", f"--h36m_root={tree.root}",
           f"--output_dir={out}", "--subjects=S9", "--image_size=48", "--background=remove"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "wrote 1 records" in run.stdout
    report = inspect.inspect_dataset(out, str(tmp_path / "sheet.png"), log=lambda s: None)
    assert report.num_records == 1 and os.path.exists(tmp_path / "sheet.png")
