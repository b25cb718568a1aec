"""Real motion: the DeepMimic reader (round trip within 1 mm against an independent forward
kinematics written here), the committed pybullet_data clips (checksums, licence note,
loadable), imported clips for the extra people and the real-motion test subjects.

Every DeepMimic fixture is written here from known joint rotations.
"""
import hashlib
import json
import os

import numpy as np
import pytest

from tfrecords_tools.synth import motion_io
from tfrecords_tools.synth.motion_io import deepmimic

REAL = os.path.join(os.path.dirname(__file__), "..", "tfrecords_tools", "synth", "real_motion")

# The humanoid of pybullet_data/humanoid/humanoid.urdf at globalScaling 0.25, y up,
# z to the right: (parent, offset m, kind), written independently of the reader's table.
_Q, _A, _N = "quat", "angle", None
_HUMANOID = [
    ("root", None, (0, 0, 0), _Q), ("chest", "root", (0, .236151, 0), _Q),
    ("neck", "chest", (0, .223894, 0), _Q), ("right_hip", "root", (0, 0, .084887), _Q),
    ("right_knee", "right_hip", (0, -.421546, 0), _A),
    ("right_ankle", "right_knee", (0, -.40987, 0), _Q),
    ("right_shoulder", "chest", (-.02405, .2435, .18311), _Q),
    ("right_elbow", "right_shoulder", (0, -.274788, 0), _A),
    ("left_hip", "root", (0, 0, -.084887), _Q), ("left_knee", "left_hip", (0, -.421546, 0), _A),
    ("left_ankle", "left_knee", (0, -.40987, 0), _Q),
    ("left_shoulder", "chest", (-.02405, .2435, -.18311), _Q),
    ("left_elbow", "left_shoulder", (0, -.274788, 0), _A),
]
_LEAVES = {"right_wrist": ("right_elbow", (0, -.258947, 0)),
           "left_wrist": ("left_elbow", (0, -.258947, 0)),
           "head": ("neck", (0, .175, 0)), "head_top": ("neck", (0, .2775, 0))}
# Human3.6M order -> humanoid point.
_H36M = ["root", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
         "left_ankle", "chest", "neck", "head", "head_top", "left_shoulder", "left_elbow",
         "left_wrist", "right_shoulder", "right_elbow", "right_wrist"]


def _rodrigues(axis, angle):
    """Rotation matrices [T, 3, 3] about unit ``axis`` [T, 3] by ``angle`` [T]."""
    k = np.zeros((len(axis), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k -= np.transpose(k, (0, 2, 1))
    a = angle[:, None, None]
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _known_motion(frames=30, seed=0):
    """Rows [T, 44] of smoothly varying rotations and the points they put where (m, y up)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, frames)
    rows = [np.full((frames, 1), 0.02), np.stack([0.8 * t, 0.85 + 0.05 * np.sin(6 * t),
                                                  0.1 * t], -1)]
    pos, rot = {}, {}
    for name, parent, offset, kind in _HUMANOID:
        amp, phase = rng.uniform(0.2, 0.9), rng.uniform(0, 6)
        angle = amp * np.sin(4 * t + phase)
        if kind == _Q:
            axis = rng.normal(size=3) + 0.3 * np.sin(3 * t + phase)[:, None]
            axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
            q = np.concatenate([np.cos(angle / 2)[:, None], axis * np.sin(angle / 2)[:, None]], -1)
            rows.append(q * rng.uniform(0.5, 2.0))  # any length: the reader normalises
            local = _rodrigues(axis, angle)
        else:
            rows.append(angle[:, None] - 0.6)
            local = _rodrigues(np.tile([0.0, 0.0, 1.0], (frames, 1)), angle - 0.6)
        if parent is None:
            pos[name], rot[name] = rows[1], local
        else:
            pos[name] = pos[parent] + np.einsum("tij,j->ti", rot[parent], offset)
            rot[name] = rot[parent] @ local
    for name, (parent, offset) in _LEAVES.items():
        pos[name] = pos[parent] + np.einsum("tij,j->ti", rot[parent], offset)
    out = np.concatenate(rows, -1)
    out[-1, 0] = 0.0
    return out, pos


def _to_world_mm(p):
    """Y-up metres -> the generator's Z-up mm ((x, y, z) -> (x, -z, y))."""
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], -1) * 1000.0


def test_deepmimic_round_trip_within_1mm(tmp_path):
    rows, pos = _known_motion()
    path = str(tmp_path / "known.deepmimic")
    deepmimic.write(path, rows, loop="wrap")
    raw = deepmimic.read(path)
    assert raw.fps == pytest.approx(50.0) and raw.up_axis == "y"
    for name, p in pos.items():
        np.testing.assert_allclose(raw.points[:, raw.names.index(name)], p, atol=1e-9)
    src = motion_io.load_source(path)
    assert src.table == "deepmimic"
    expected = _to_world_mm(np.stack([pos[n] for n in _H36M], 1))
    assert np.abs(src.joints - expected).max() < 1.0


def test_deepmimic_rest_pose_geometry(tmp_path):
    rows = np.zeros((2, deepmimic.ROW_LENGTH))
    rows[:, 0] = [1 / 30, 0]
    rows[:, 1:4] = [0.0, 0.9, 0.0]
    for _, (_, _, cols) in deepmimic.SKELETON.items():
        if cols is not None and cols.stop - cols.start == 4:
            rows[:, cols.start] = 1.0
    rows[:, 20] = -np.pi / 2  # right knee bent 90 degrees: the shin points backwards
    path = str(tmp_path / "rest.txt")  # pybullet's own extension, one file
    deepmimic.write(path, rows)
    raw = motion_io.read_raw(path)
    p = dict(zip(raw.names, raw.points[0]))
    np.testing.assert_allclose(p["right_knee"], [0, 0.9 - .421546, .084887], atol=1e-6)
    np.testing.assert_allclose(p["right_ankle"], [-.40987, 0.9 - .421546, .084887], atol=1e-6)
    np.testing.assert_allclose(p["left_ankle"], [0, 0.9 - .421546 - .40987, -.084887], atol=1e-6)
    assert raw.fps == pytest.approx(30.0)


def test_deepmimic_unequal_keyframes_resampled(tmp_path):
    rows, pos = _known_motion(6)
    rows[:-1, 0] = [0.02, 0.02, 0.04, 0.02, 0.02]
    path = str(tmp_path / "uneven.deepmimic")
    deepmimic.write(path, rows)
    raw = deepmimic.read(path)
    assert raw.fps == pytest.approx(50.0) and len(raw.points) == 7  # 0.12 s at 0.02 s
    root = raw.names.index("root")
    np.testing.assert_allclose(raw.points[3, root], (pos["root"][2] + pos["root"][3]) / 2)


def test_bad_deepmimic_files(tmp_path):
    def err(text, name="bad.deepmimic"):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(motion_io.MotionFileError) as e:
            motion_io.load_source(str(path))
        assert "\n" not in str(e.value) and str(path) in str(e.value)
        return str(e.value)

    rows, _ = _known_motion(3)
    assert "not a readable DeepMimic JSON" in err("{")
    assert 'no "Frames"' in err('{"Loop": "none"}')
    assert "frame 1 is not a list of 44 numbers" in err(json.dumps(
        {"Frames": [rows[0].tolist(), rows[1, :40].tolist(), rows[2].tolist()]}))
    zero = rows.copy()
    zero[1, 8:12] = 0
    assert "frame 1: the chest quaternion is zero" in err(json.dumps({"Frames": zero.tolist()}))
    dur = rows.copy()
    dur[0, 0] = 0
    assert "frame 0 has duration 0.0" in err(json.dumps({"Frames": dur.tolist()}))


def test_committed_clips_match_their_source_notes():
    assert "zlib" in open(os.path.join(REAL, "deepmimic", "LICENSE")).read()
    names, subjects = [], {p: set() for p in ("cmu_pool", "cmu_extra", "cmu_bend", "cmu_heldout")}
    for part in ("deepmimic", "cmu_pool", "cmu_extra", "cmu_bend", "cmu_heldout"):
        folder = os.path.join(REAL, part)
        notes = json.load(open(os.path.join(folder, "SOURCE.json")))["files"]
        found = [p for _, p in motion_io.discover(folder)]
        assert sorted(os.path.basename(p) for p in found) == sorted(notes)
        for path in found:
            note = notes[os.path.basename(path)]
            assert hashlib.sha256(open(path, "rb").read()).hexdigest() == note["sha256"]
            if part == "deepmimic":
                assert note["licence"].startswith("zlib") and "pybullet" in note["source"]
                assert deepmimic.read(path).points.shape[1] == len(deepmimic.SKELETON)
            else:  # CMU takes: 17 Human3.6M-named joints at 50 fps, retargeted per subject
                assert note["licence"].startswith("CMU") and note["subject"].startswith("CMU")
                src = motion_io.load_source(path)
                assert src.table == "h36m" and not src.as_given
                assert len(src.joints) == note["frames"] <= 600
                subjects[part].add(note["subject"])
            names.append(os.path.basename(path))
    assert len(names) == len(set(names)) == 42
    # The real-motion test is held out by capture subject: its performer is in no pool clip.
    assert subjects["cmu_heldout"] == {"CMU 02"}
    assert subjects["cmu_pool"] == {f"CMU {s}" for s in ("01", "03", "05", "06", "07")}
    assert subjects["cmu_extra"] == {"CMU 05", "CMU 06", "CMU 13"}
    assert subjects["cmu_bend"] == {"CMU 26", "CMU 64"}
    trained = subjects["cmu_pool"] | subjects["cmu_extra"] | subjects["cmu_bend"]
    assert not trained & subjects["cmu_heldout"]


# ----------------------------------------------------------------------------- looping

def test_loop_cyclic_walks_on_and_acyclic_plays_back():
    from tfrecords_tools.synth.motion_io import retarget
    t = np.arange(5, dtype=float)
    take = np.zeros((5, 17, 3))
    take[:, :, 0] = 100.0 * t[:, None]  # moves 400 mm along x, last pose = first, moved
    looped = retarget.loop(take, 12, cyclic=True)
    assert len(looped) == 12
    np.testing.assert_allclose(looped[:, 0, 0], 100.0 * np.arange(12))
    back = retarget.loop(take, 12, cyclic=False)
    np.testing.assert_allclose(back[:, 0, 0], [0, 100, 200, 300, 400, 300, 200, 100, 0, 100,
                                               200, 300])
    assert retarget.loop(take, 3, cyclic=True) is take


# ----------------------------------------------------------------------------- generator

def _clip_dirs(tmp_path):
    """A pool of two committed DeepMimic clips and a held-out one (copied with their
    notes)."""
    import shutil
    pool, test = tmp_path / "pool", tmp_path / "heldout"
    for folder, part, names in ((pool, "pool", ("walk", "roll")), (test, "heldout", ("jump",))):
        folder.mkdir()
        notes = json.load(open(os.path.join(REAL, "deepmimic", "SOURCE.json")))["files"]
        for n in names:
            shutil.copy(os.path.join(REAL, "deepmimic", f"{n}.deepmimic"), folder)
        (folder / "SOURCE.json").write_text(json.dumps(
            {"files": {f"{n}.deepmimic": notes[f"{n}.deepmimic"] for n in names}}))
    return str(pool), str(test)


def _config(pool, test, **kw):
    from tfrecords_tools import synthesize
    base = dict(subjects=("S1", "S9", "U01", "U02"), actions=("Walking",), takes=1,
                num_frames=30, image_size=32, extra_actions_per_subject=1, treadmill=True,
                extra_motion_dir=pool, test_motion_dir=test)
    base.update(kw)
    return synthesize.SynthConfig(**base)


def test_extra_people_and_test_subjects_draw_imported_motion(tmp_path):
    from tfrecords_tools import synthesize
    pool, test = _clip_dirs(tmp_path)
    cfg = _config(pool, test, extra_actions_per_subject=2)
    assert synthesize.subject_actions(cfg, "S1") == ("Walking",)
    assert synthesize.subject_actions(cfg, "S9") == ("Walking", "jump")
    draws = {u: synthesize.subject_actions(cfg, u) for u in ("U01", "U02", "U03", "U04")}
    assert draws == {u: synthesize.subject_actions(cfg, u) for u in draws}  # per seed
    assert all(len(d) == 2 and set(d) <= {"Walking", "walk", "roll"} for d in draws.values())
    only = _config(pool, test, extra_motion_only=True, extra_actions_per_subject=0)
    assert synthesize.subject_actions(only, "U01") == ("roll", "walk")
    u01 = synthesize.body_lib.make_subject("U01")
    # The walk clip is 1.3 s (64 frames at 50 fps): longer than 30 frames, kept whole;
    # looped (walking on, then the treadmill) up to 200.
    assert [len(t) for t in synthesize.motion_takes(cfg, u01, "walk")] == [64]
    long = synthesize.motion_takes(_config(pool, test, num_frames=200), u01, "walk")
    assert [len(t) for t in long] == [200]
    assert np.abs(long[0][:, 0, :2]).max() < 1e-6  # treadmill: pelvis kept at the origin


def test_labelled_subjects_draw_pool_clips_but_test_subjects_never(tmp_path):
    from tfrecords_tools import synthesize
    pool, test = _clip_dirs(tmp_path)
    one = _config(pool, test, subjects=("S1", "S5", "S9", "U01"), labelled_extra_motions=1)
    draws = {s: synthesize.subject_actions(one, s) for s in ("S1", "S5", "S6", "S7", "S8")}
    assert all(d[0] == "Walking" and len(d) == 2 and d[1] in {"walk", "roll"}
               for d in draws.values())
    assert len({d[1] for d in draws.values()}) == 2  # drawn per subject
    assert draws["S1"] == synthesize.subject_actions(one, "S1")  # by seed
    assert synthesize.subject_actions(one, "S9") == ("Walking", "jump")
    every = _config(pool, test, labelled_extra_motions=5)
    assert synthesize.subject_actions(every, "S1") == ("Walking", "roll", "walk")
    assert synthesize.subject_actions(_config(pool, test), "S1") == ("Walking",)
    assert "labelled_extra_motions" not in synthesize.settings_of(_config(pool, test))
    assert synthesize.settings_of(one)["labelled_extra_motions"] == 1
    with pytest.raises(ValueError, match="--labelled_extra_motions needs --extra_motion_dir"):
        synthesize.validate(_config(None, test, labelled_extra_motions=2))
    with pytest.raises(ValueError, match="labelled_extra_motions"):
        synthesize.validate(_config(pool, test, labelled_extra_motions=-1))
    # --labelled_motion_only: the clips go to the labelled subjects, the extra people stay
    # procedural; the manifest records it (older datasets, without the field, still resume).
    mine = _config(pool, test, subjects=("S1", "S9", "U01", "U02"), labelled_extra_motions=5,
                   labelled_motion_only=True, extra_actions_per_subject=0)
    assert synthesize.subject_actions(mine, "S1") == ("Walking", "roll", "walk")
    assert synthesize.subject_actions(mine, "U01") == ("Walking",)
    assert synthesize.subject_actions(mine, "S9") == ("Walking", "jump")
    assert synthesize.settings_of(mine)["labelled_motion_only"] is True
    assert "labelled_motion_only" not in synthesize.settings_of(one)
    with pytest.raises(ValueError, match="--labelled_motion_only needs --labelled_extra"):
        synthesize.validate(_config(pool, test, labelled_motion_only=True))
    with pytest.raises(ValueError, match="contradict"):
        synthesize.validate(_config(pool, test, labelled_extra_motions=1,
                                    labelled_motion_only=True, extra_motion_only=True))


def test_mirrored_pool_clips_are_the_same_motion_other_handed(tmp_path):
    from tfrecords_tools import skeleton, synthesize
    pool, test = _clip_dirs(tmp_path)
    cfg = _config(pool, test, extra_motion_mirror=True, extra_motion_only=True,
                  extra_actions_per_subject=0)
    assert synthesize.subject_actions(cfg, "U01") == ("roll", "walk", "rollmirror",
                                                      "walkmirror")
    assert synthesize.subject_actions(cfg, "S9") == ("Walking", "jump")  # test never mirrored
    walk, mirror = (synthesize.motion_source(cfg, a).joints for a in ("walk", "walkmirror"))
    np.testing.assert_allclose(mirror[:, skeleton.FLIP_PERMUTATION, 0], -walk[:, :, 0])
    np.testing.assert_allclose(mirror[:, skeleton.FLIP_PERMUTATION, 1:], walk[:, :, 1:])
    assert not synthesize.is_mirrored(cfg, "walk") and synthesize.is_mirrored(cfg, "walkmirror")
    assert synthesize.settings_of(cfg)["extra_motion_mirror"] is True
    assert "extra_motion_mirror" not in synthesize.settings_of(_config(pool, test))
    with pytest.raises(ValueError, match="--extra_motion_mirror needs --extra_motion_dir"):
        synthesize.validate(_config(None, test, extra_motion_mirror=True))
    os.rename(os.path.join(pool, "roll.deepmimic"), os.path.join(pool, "walkmirror.deepmimic"))
    with pytest.raises(ValueError, match="named like another's mirror image"):
        synthesize.validate(cfg)


def test_generate_records_clip_sources_in_the_manifest(tmp_path):
    from tfrecords_tools import synthesize
    pool, test = _clip_dirs(tmp_path)
    cfg = _config(pool, test, subjects=("S9", "U01"), extra_motion_only=True,
                  extra_actions_per_subject=1, num_frames=30)
    manifest = synthesize.generate(str(tmp_path / "out"), cfg, log=lambda s: None)
    settings = manifest["settings"]
    assert settings["test_motion_actions"] == ["jump"]
    files = {f["name"]: f for f in settings["extra_motion_files"]}
    assert set(files) == {"walk.deepmimic", "roll.deepmimic"}
    assert files["walk.deepmimic"]["licence"].startswith("zlib")
    assert "pybullet" in files["walk.deepmimic"]["source"]
    assert settings["test_motion_files"][0]["sha256"] == hashlib.sha256(
        open(os.path.join(test, "jump.deepmimic"), "rb").read()).hexdigest()
    actions = set(manifest["images_per"]["action"])
    assert "jump" in actions and actions & {"walk", "roll"} and "Walking" in actions


def test_imported_motion_settings_are_checked(tmp_path):
    import shutil
    from tfrecords_tools import synthesize
    pool, test = _clip_dirs(tmp_path)
    shutil.copy(os.path.join(pool, "walk.deepmimic"), os.path.join(test, "walk2.deepmimic"))
    with pytest.raises(ValueError, match="same file as --extra_motion_dir"):
        synthesize.validate(_config(pool, test))
    os.remove(os.path.join(test, "walk2.deepmimic"))
    shutil.copy(os.path.join(pool, "roll.deepmimic"), os.path.join(test, "Walking.deepmimic"))
    with pytest.raises(ValueError, match="--test_motion_dir: file.*procedural.*Walking"):
        synthesize.validate(_config(pool, test))
    os.remove(os.path.join(test, "Walking.deepmimic"))
    with pytest.raises(ValueError, match="walk treadmill|capture volume"):
        synthesize.validate(_config(pool, test, treadmill=False, num_frames=1500,
                                    extra_motion_only=True, extra_actions_per_subject=0))
    with pytest.raises(ValueError, match="exclusive|imported already"):
        synthesize.validate(_config(pool, test, motion_dir=pool))
    with pytest.raises(ValueError, match="--extra_motion_only needs"):
        synthesize.validate(_config(None, None, extra_motion_only=True))
    with pytest.raises(ValueError, match="--extra_motion_dir .* is not a directory"):
        synthesize.validate(_config(str(tmp_path / "nope"), test))
    note = json.load(open(os.path.join(pool, "SOURCE.json")))
    note["files"]["walk.deepmimic"]["sha256"] = "0" * 64
    (tmp_path / "pool" / "SOURCE.json").write_text(json.dumps(note))
    with pytest.raises(ValueError, match="walk.deepmimic: sha256 .* differs"):
        synthesize.validate(_config(pool, test))
