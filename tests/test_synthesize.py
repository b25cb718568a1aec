"""Synthetic generator: schema round trip, label/pixel consistency, cameras, colour order,
determinism, resume, bad input, and motion plausibility."""
import dataclasses
import json
import os

import cv2
import numpy as np
import pytest

from tfrecords_tools import cameras, crops, dataset_io, motion_filter, schema, skeleton, synthesize
from tfrecords_tools.runtime import fileio
from tfrecords_tools.synth import body, motion, render

from tests.testutil import TINY_ACTIONS


def _clips(data_dir):
    import tensorflow as tf
    out = []
    for path in dataset_io.shard_paths(data_dir):
        for rec in tf.data.TFRecordDataset(path):
            out.append((os.path.basename(path), schema.decode_clip(rec.numpy())))
    return out


def _small(**kw):
    base = dict(subjects=("S1",), actions=("Boxing",), takes=1, num_frames=40, image_size=32,
                clip_length=16, seed=3)
    base.update(kw)
    return synthesize.SynthConfig(**base)


def _decode(jpeg):
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]  # RGB


def _camera(clip, v):
    fx, fy, cx, cy = clip.intrinsics[v]
    return cameras.Camera(clip.camera_ids[v], fx, fy, cx, cy, *clip.image_wh[v],
                          clip.rotation[v].astype(np.float64), clip.translation[v].astype(np.float64),
                          clip.distortion[v].astype(np.float64))


# ----------------------------------------------------------------------------- dataset level

def test_tiny_dataset_round_trip_and_layout(tiny_dataset):
    import tensorflow as tf
    manifest = dataset_io.load_manifest(tiny_dataset)
    assert set(manifest["images_per"]["subject"]) == set(body.KNOWN_SUBJECTS)
    assert set(manifest["images_per"]["action"]) == set(TINY_ACTIONS)
    clips = _clips(tiny_dataset)
    assert len(clips) == manifest["totals"]["num_records"]
    per_shard_subjects = {}
    for shard, clip in clips:
        per_shard_subjects.setdefault(shard, set()).add(clip.subject)
        assert clip.num_views == 4 and clip.image_size == 64 and clip.num_frames <= 64
        assert clip.joints3d_world is not None and not clip.has_background
        assert np.all(np.diff(clip.frame_index) > 0)
        assert clip.sequence_id == f"{clip.subject}/{clip.action} 1"
    assert all(len(s) == 1 for s in per_shard_subjects.values())  # a shard never mixes subjects
    # The motion filter dropped some frames but kept most (frame numbers have gaps).
    kept = manifest["totals"]["num_frames"] / (len(body.KNOWN_SUBJECTS) * len(TINY_ACTIONS) * 100)
    assert 0.5 < kept < 1.0
    # TF parsing path used by the training pipelines.
    rec = next(iter(tf.data.TFRecordDataset(dataset_io.shard_paths(tiny_dataset)[0])))
    parsed = schema.parse_clip_tf(rec)
    img = tf.io.decode_jpeg(parsed["image/encoded"][0, 0], channels=3)
    assert img.shape == (64, 64, 3)
    first = clips[0][1] if clips[0][0] == os.path.basename(dataset_io.shard_paths(tiny_dataset)[0]) \
        else None
    if first is not None:
        np.testing.assert_allclose(parsed["pose/joints3d_world"].numpy(), first.joints3d_world,
                                   rtol=1e-6)


def test_cameras_match_the_h36m_rig(tiny_dataset):
    _, clip = _clips(tiny_dataset)[0]
    rig = cameras.h36m_rig()
    assert clip.camera_ids == [c.camera_id for c in rig]
    for v, cam in enumerate(rig):
        fx, fy, cx, cy, w, h = cameras.H36M_INTRINSICS[cam.camera_id]
        np.testing.assert_allclose(clip.intrinsics[v], [fx, fy, cx, cy], rtol=1e-6)
        np.testing.assert_array_equal(clip.image_wh[v], [w, h])
        q, centre = cameras.H36M_S1_EXTRINSICS[cam.camera_id]
        stored = _camera(clip, v)
        np.testing.assert_allclose(stored.rotation, cameras.quaternion_to_matrix(q).T, atol=1e-6)
        np.testing.assert_allclose(stored.centre, centre, atol=0.05)  # float32 storage


def test_projected_joints_fall_on_the_rendered_body(tiny_dataset):
    """Each joint, projected with the record's camera into its crop, lands on a body pixel
    (the background is black); with the views' cameras swapped it does not."""
    on_body, on_body_swapped, total = 0, 0, 0
    for _, clip in _clips(tiny_dataset)[::3]:
        for t in range(0, clip.num_frames, 9):
            for v in range(clip.num_views):
                img = _decode(clip.images[t][v])
                s = clip.image_size
                for cam_v, counter in ((v, "ok"), ((v + 1) % clip.num_views, "swap")):
                    uv = _camera(clip, cam_v).project(clip.joints3d_world[t])
                    xy = np.round(crops.image_to_crop(uv, clip.crop_boxes[t, v], s)).astype(int)
                    inside = np.all((xy >= 0) & (xy < s), axis=1)
                    hit = np.zeros(len(xy), bool)
                    hit[inside] = img[xy[inside, 1], xy[inside, 0]].max(-1) > 20
                    if counter == "ok":
                        assert inside.all(), (clip.sequence_id, t, v)
                        on_body += hit.sum()
                        total += len(xy)
                    else:
                        on_body_swapped += hit.sum()
    assert on_body / total > 0.98
    assert on_body_swapped / total < 0.7  # the check can fail: wrong geometry is caught


def test_crop_transform_is_exactly_invertible(tiny_dataset):
    _, clip = _clips(tiny_dataset)[1]
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1000, (clip.num_frames, clip.num_views, 17, 2))
    back = crops.crop_to_image(crops.image_to_crop(pts, clip.crop_boxes, clip.image_size),
                               clip.crop_boxes, clip.image_size)
    np.testing.assert_allclose(back, pts, rtol=0, atol=1e-9)
    side = clip.crop_boxes[..., 2] - clip.crop_boxes[..., 0]
    np.testing.assert_allclose(side, clip.crop_boxes[..., 3] - clip.crop_boxes[..., 1], rtol=1e-5)


def test_colour_order_round_trip():
    """A red shirt is red after render -> cv2 JPEG encode -> tf.io.decode_jpeg (RGB)."""
    import tensorflow as tf
    subj = body.make_subject("S1")
    subj = dataclasses.replace(subj, look=dataclasses.replace(
        subj.look, shirt=(220, 30, 30), shirt_pattern="plain", strap_side=""))
    joints = motion.generate_motion(subj, "Waving", 5, np.random.default_rng(0))[:1]
    cam = cameras.h36m_rig()[0]
    box = crops.square_box(cam.project(joints[0]), 0.3)
    chest = crops.image_to_crop(cam.project(0.5 * (joints[0, 7] + joints[0, 8]))[None], box, 96)[0]
    x, y = np.round(chest).astype(int)
    bgr = render.render_batch(joints, [cam], subj, box[None, None], 96)[0][0]
    rgb = tf.io.decode_jpeg(synthesize.encode_jpeg(bgr, 95)).numpy()
    r, g, b = rgb[y, x].astype(int)
    assert r > 150 and g < 90 and b < 90, (r, g, b)
    r2, g2, b2 = render.render_view(joints[0], cam, subj, box, 96)[y, x].astype(int)
    assert r2 > 150 and g2 < 90 and b2 < 90


def test_render_view_full_image_puts_joints_on_the_body():
    subj = body.make_subject("S9")
    joints = motion.generate_motion(subj, "Walking", 30, np.random.default_rng(1))[-1]
    for cam in cameras.h36m_rig()[:2]:
        img = render.render_view(joints, cam, subj, out_size=500)
        assert img.shape == (round(cam.height / 2), 500, 3) and img.dtype == np.uint8
        xy = np.round(cam.project(joints) * 0.5).astype(int)
        assert (img[xy[:, 1], xy[:, 0]].max(-1) > 20).mean() > 0.95
        full = render.render_view(joints, cam, subj)
        assert full.shape == (cam.height, cam.width, 3)


# ----------------------------------------------------------------------------- determinism, resume

def _shard_hashes(d):
    m = dataset_io.load_manifest(d)
    return {s["file"]: s["sha256"] for s in m["shards"]}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    """Byte-identical shards for a seed, whichever process (worker) writes them."""
    a, b, c = (str(tmp_path / n) for n in "abc")
    two = dict(subjects=("S1", "S9"))
    synthesize.generate(a, _small(**two), log=lambda s: None)
    synthesize.generate(b, _small(**two), num_workers=2, log=lambda s: None)
    synthesize.generate(c, _small(seed=4), log=lambda s: None)  # S1 only: enough to differ.
    assert _shard_hashes(a) == _shard_hashes(b)
    assert set(_shard_hashes(c)) == {"S1-Boxing.tfrecord"}
    assert _shard_hashes(a)["S1-Boxing.tfrecord"] != _shard_hashes(c)["S1-Boxing.tfrecord"]


def test_resume_after_an_interrupted_run(tmp_path, monkeypatch):
    cfg = _small(subjects=("S1", "S5", "S9"))
    ref = str(tmp_path / "ref")
    synthesize.generate(ref, cfg, log=lambda s: None)
    out = str(tmp_path / "out")
    real = synthesize.take_clips
    calls = {"n": 0}

    def crash_on_second_shard(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")
        yield from real(*args, **kwargs)

    monkeypatch.setattr(synthesize, "take_clips", crash_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        synthesize.generate(out, cfg, log=lambda s: None)
    assert not os.path.exists(os.path.join(out, dataset_io.MANIFEST))
    assert not [n for n in os.listdir(out) if ".tmp" in n]  # no half-written shard left
    done = os.path.join(out, "S1-Boxing.tfrecord")
    mtime = os.path.getmtime(done)
    monkeypatch.setattr(synthesize, "take_clips", real)
    logs = []
    synthesize.generate(out, cfg, log=logs.append)
    assert any("resuming: 1 of 3" in line for line in logs)
    assert os.path.getmtime(done) == mtime  # the finished shard was not rewritten
    assert _shard_hashes(out) == _shard_hashes(ref)


# ----------------------------------------------------------------------------- bad input

def _motion_npz(tmp_path, joints, name="m.npz"):
    path = str(tmp_path / name)
    np.savez(path, joints3d_world=joints)
    return path


def _good_motion():
    return motion.generate_motion(body.make_subject("S1"), "Walking", 30, np.random.default_rng(0))


@pytest.mark.parametrize("kw, match", [
    (dict(subjects=("S1", "Bob")), "unknown subject.*Bob"),
    (dict(subjects=("U00",)), "unknown subject.*U00"),
    (dict(subjects=("U1",)), "unknown subject.*U1"),
    (dict(actions=("Walking", "Flying")), "unknown action.*Flying"),
    (dict(image_size=8), r"--image_size=8: expected an integer in \[32, 512\]"),
    (dict(image_size=4096), "--image_size=4096: expected"),
    (dict(clip_length=0), "clip_length"),
    (dict(min_motion_mm=-1.0), "min_motion_mm"),
])
def test_bad_settings_are_refused_before_writing(tmp_path, kw, match):
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match=match):
        synthesize.generate(out, _small(**kw), log=lambda s: None)
    assert not os.path.exists(out)


@pytest.mark.large
def test_extra_people_through_the_binary(tmp_path):
    """``--extra_subjects=2`` adds U01 and U02 (own bodies and looks) to ``--subjects``.
    (An out-of-range count is refused naming the flag, before anything is written:
    tests/test_ranges.py, synthesize--extra_subjects=1000.)"""
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo, "CUDA_VISIBLE_DEVICES": ""}
    small = ["--actions=Boxing", "--takes=1", "--num_frames=40", "--image_size=32",
             "--clip_length=16", "--seed=3", "--num_workers=1"]

    def synth(out, *args):
        return subprocess.run([sys.executable, "-m", "tfrecords_tools.synthesize",
                               f"--output_dir={out}", *args, *small], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=300)

    # The CPU flagfile's structure, with 2 extra people instead of 100 and tiny takes: the
    # extra people come beside --subjects.
    people = str(tmp_path / "people")
    done = synth(people, "--flagfile=flags/synthesize_cpu.flags", "--subjects=S9",
                 "--extra_subjects=2")
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = dataset_io.load_manifest(people)
    assert set(manifest["images_per"]["subject"]) == {"S9", "U01", "U02"}
    assert manifest["settings"]["look_variation"] == "take"
    shards = {(s["images_per"]["subject"].popitem()[0], s["images_per"]["action"].popitem()[0])
              for s in manifest["shards"]}
    assert {a for s, a in shards if s == "S9"} == {"Boxing", *motion.UNSEEN_ACTIONS}
    assert len([a for s, a in shards if s == "U01"]) == 2
    assert not {a for s, a in shards if s != "S9"} & set(motion.UNSEEN_ACTIONS)
    assert body.extra_subjects(2) == ("U01", "U02")
    assert body.make_subject("U01").look != body.make_subject("U02").look
    assert body.make_subject("U01").look != body.make_subject("S1").look


@pytest.mark.parametrize("kind, match", [
    ("shape", r"shape \(30, 16, 3\), expected"),
    ("nan", "NaN or inf in frames"),
    ("metres", "looks like metres"),
    ("behind", "behind or too close to camera"),
])
def test_bad_motion_files_are_refused_before_writing(tmp_path, kind, match):
    j = _good_motion()
    if kind == "shape":
        j = j[:, :16]
    elif kind == "nan":
        j = j.copy()
        j[5, 3, 1] = np.nan
    elif kind == "metres":
        j = j / 1000.0
    else:
        j = j + [0, 6000.0, 0]  # far outside the capture volume, behind a camera
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match=match):
        synthesize.generate(out, _small(motion_file=_motion_npz(tmp_path, j)), log=lambda s: None)
    assert not os.path.exists(out)


def test_other_settings_in_output_dir_refused(tmp_path):
    out = str(tmp_path / "out")
    synthesize.generate(out, _small(), log=lambda s: None)
    before = _shard_hashes(out)
    with pytest.raises(dataset_io.DatasetError, match="different settings.*image_size"):
        synthesize.generate(out, _small(image_size=48), log=lambda s: None)
    info = os.path.join(out, dataset_io.DATASET_INFO)
    with open(info) as f:
        meta = json.load(f)
    meta["schema_version"] = 999
    with open(info, "w") as f:
        json.dump(meta, f)
    with pytest.raises(dataset_io.DatasetError, match="schema version 999"):
        synthesize.generate(out, _small(), log=lambda s: None)
    assert _shard_hashes(out) == before


def test_motion_file_is_rendered_as_given(tmp_path):
    j = _good_motion()
    path = _motion_npz(tmp_path, j, "my_dance.npz")
    out = str(tmp_path / "out")
    manifest = synthesize.generate(out, _small(motion_file=path, min_motion_mm=0.0),
                                   log=lambda s: None)
    assert set(manifest["images_per"]["action"]) == {"mydance"}
    assert manifest["settings"]["motion_file_sha256"] == fileio.sha256_file(path)
    clips = [c for _, c in _clips(out)]
    joints = np.concatenate([c.joints3d_world for c in clips])
    frames = np.concatenate([c.frame_index for c in clips])
    np.testing.assert_array_equal(frames, np.arange(len(j)))
    np.testing.assert_allclose(joints, j, atol=1e-3)


# ----------------------------------------------------------------------------- motion

@pytest.mark.parametrize("action, name, seed", [(a, "S7", 5) for a in motion.ALL_ACTIONS] + [
    (a, "U12", 1) for a in motion.EXTRA_ACTIONS + motion.UNSEEN_ACTIONS])
def test_procedural_motion_is_plausible(action, name, seed):
    subj = body.make_subject(name)
    j = motion.generate_motion(subj, action, 400, np.random.default_rng(seed))
    assert j.shape == (400, 17, 3) and np.isfinite(j).all()
    # Rigid skeleton: bone lengths constant over time.
    for a, b in skeleton.BONES:
        length = np.linalg.norm(j[:, a] - j[:, b], axis=-1)
        assert length.std() < 1e-6 * max(length.mean(), 1.0)
    # Continuous at 50 fps: no joint jumps more than 12 cm between frames (10 km/h limb speed
    # allows ~6 cm; punches ~ 10 cm).
    assert np.linalg.norm(np.diff(j, axis=0), axis=-1).max() < 120
    # Feet on (or, jumping, above) the floor; inside the capture volume.
    feet = j[:, [3, 6], 2].min(1)
    assert feet.min() > 0
    if action != "Jumping":
        np.testing.assert_allclose(feet, 0.04 * subj.body.height, atol=1e-6)
    assert np.hypot(j[:, 0, 0], j[:, 0, 1]).max() < 1.2 * motion.CAPTURE_RADIUS
    # Some periods of little motion (the filter drops frames) but mostly moving.
    kept = motion_filter.moving_frames_3d(j, 4.0).mean()
    assert 0.3 < kept < 1.0
    # Knees never hyperextend (joint limits): the shin only folds backwards, so
    # (thigh x shin) points to the body's left (or vanishes when straight).
    left = j[:, 4] - j[:, 1]
    for hip, knee, foot in ((1, 2, 3), (4, 5, 6)):
        thigh, shin = j[:, knee] - j[:, hip], j[:, foot] - j[:, knee]
        side = np.einsum("ti,ti->t", np.cross(thigh, shin), left)
        scale = np.linalg.norm(thigh, axis=-1) * np.linalg.norm(shin, axis=-1) * np.linalg.norm(
            left, axis=-1)
        assert (side >= -1e-3 * scale).all(), action


def test_actions_and_subjects_differ():
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    s1, s9 = body.make_subject("S1"), body.make_subject("S9")
    assert s1.body != s9.body and s1.look != s9.look
    assert body.make_subject("S1") == s1  # fixed by name and seed
    poses = [motion.generate_motion(s1, a, 200, rng()) for a in motion.ACTIONS]
    rel = [skeleton.root_relative(p) for p in poses]
    for i in range(len(rel)):
        for k in range(i + 1, len(rel)):
            assert np.abs(rel[i] - rel[k]).mean() > 20, (motion.ACTIONS[i], motion.ACTIONS[k])


@pytest.mark.parametrize("action", motion.EXTRA_ACTIONS + motion.UNSEEN_ACTIONS)
def test_new_motion_families_are_deterministic_and_within_limits(action):
    subj = body.make_subject("U07")
    a = motion.generate_motion(subj, action, 300, np.random.default_rng(11))
    b = motion.generate_motion(subj, action, 300, np.random.default_rng(11))
    c = motion.generate_motion(subj, action, 300, np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)  # same seed, same take
    assert np.abs(a - c).mean() > 1.0     # another seed, another take
    # Joint limits hold: elbows never bend past 150 degrees nor backwards (the forearm stays
    # within the limit cone of the upper arm), knees never past 150.
    for p, m, c_ in ((11, 12, 13), (14, 15, 16), (1, 2, 3), (4, 5, 6)):
        u, v = a[:, m] - a[:, p], a[:, c_] - a[:, m]
        cos = np.einsum("ti,ti->t", u, v) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() <= 150.0 + 1e-6, (action, m)


def test_unseen_families_differ_from_every_training_motion():
    """The held-out families are new poses, not renamed standard actions: each is far (mean
    root-relative joint distance) from every standard and pre-training family."""
    s9 = body.make_subject("S9")
    rel = {a: skeleton.root_relative(motion.generate_motion(s9, a, 300, np.random.default_rng(0)))
           for a in motion.ALL_ACTIONS}
    for unseen in motion.UNSEEN_ACTIONS:
        for other in motion.ACTIONS + motion.EXTRA_ACTIONS:
            assert np.abs(rel[unseen] - rel[other]).mean() > 20, (unseen, other)


def test_per_take_looks_are_deterministic_and_vary():
    s1 = body.make_subject("S1")
    looks = [body.take_look(s1, 0, f"Walking/{t}") for t in range(8)]
    assert looks[0] == body.take_look(s1, 0, "Walking/0")  # fixed by person, seed, take
    assert len({(l.shirt, l.trousers) for l in looks}) == 8  # a new outfit every take
    assert {l.skin for l in looks} == {s1.look.skin} and {l.hair for l in looks} == {s1.look.hair}
    # Which side carries the asymmetric cues changes from take to take.
    assert {l.watch_side for l in looks} == {"L", "R"}
    assert len({l.strap_side for l in looks}) > 1


def test_subject_actions_keep_unseen_families_for_the_test_subjects():
    cfg = synthesize.SynthConfig(
        subjects=body.KNOWN_SUBJECTS + body.extra_subjects(30), actions=motion.ACTIONS,
        extra_actions=motion.ACTIONS + motion.EXTRA_ACTIONS, extra_actions_per_subject=3,
        unseen_actions=motion.UNSEEN_ACTIONS)
    for name in cfg.subjects:
        acts = synthesize.subject_actions(cfg, name)
        if name in body.TEST_SUBJECTS:
            assert acts == motion.ACTIONS + motion.UNSEEN_ACTIONS
        elif name in body.TRAIN_SUBJECTS:
            assert acts == motion.ACTIONS  # S1's labelled actions are unchanged
        else:
            assert len(acts) == 3 and not set(acts) & set(motion.UNSEEN_ACTIONS)
            assert acts == synthesize.subject_actions(cfg, name)  # drawn by seed
    drawn = {a for n in body.extra_subjects(30) for a in synthesize.subject_actions(cfg, n)}
    assert set(motion.EXTRA_ACTIONS) <= drawn
    with pytest.raises(ValueError, match="--extra_actions.*stay test-only"):
        synthesize.validate(dataclasses.replace(cfg, extra_actions=("Kicking",)))
    with pytest.raises(ValueError, match="--unseen_actions: unknown"):
        synthesize.validate(dataclasses.replace(cfg, unseen_actions=("Walking",)))
    with pytest.raises(ValueError, match="--look_variation=outfit"):
        synthesize.validate(dataclasses.replace(cfg, look_variation="outfit"))


def test_extra_people_names_beyond_99():
    assert body.extra_subjects(101)[-3:] == ("U99", "U100", "U101")
    assert body.is_synthetic_subject("U100") and body.is_synthetic_subject("U07")
    assert not body.is_synthetic_subject("U7") and not body.is_synthetic_subject("U1000")
    assert not body.is_synthetic_subject("U00")


def test_standard_subjects_are_unchanged_by_the_new_options(tmp_path):
    """With one look per person (the default), S1's shard is byte-identical whether or not
    the dataset also has extra people, their families and the unseen test families; with
    per-take looks only the pixels change, never the poses."""
    base = _small(subjects=("S1", "S9"), actions=("Boxing",))
    plain, more, takes = (str(tmp_path / n) for n in ("plain", "more", "takes"))
    synthesize.generate(plain, base, log=lambda s: None)
    synthesize.generate(more, dataclasses.replace(
        base, subjects=("S1", "S9", "U01"), extra_actions=("Dancing", "RandomMotion"),
        unseen_actions=("Kicking",)), log=lambda s: None)
    synthesize.generate(takes, dataclasses.replace(base, look_variation="take"),
                        log=lambda s: None)
    h_plain, h_more, h_takes = (_shard_hashes(d) for d in (plain, more, takes))
    for shard in ("S1-Boxing.tfrecord", "S9-Boxing.tfrecord"):
        assert h_plain[shard] == h_more[shard]
        assert h_plain[shard] != h_takes[shard]
    assert set(h_more) == {"S1-Boxing.tfrecord", "S9-Boxing.tfrecord", "S9-Kicking.tfrecord",
                           "U01-Dancing.tfrecord", "U01-RandomMotion.tfrecord"}
    a = {c.sequence_id: c.joints3d_world for _, c in _clips(plain)}
    b = {c.sequence_id: c.joints3d_world for _, c in _clips(takes)}
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    manifest = dataset_io.load_manifest(more)
    assert manifest["settings"]["unseen_actions"] == ["Kicking"]
