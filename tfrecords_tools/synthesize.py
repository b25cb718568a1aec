r"""Synthetic multi-view humans written as sharded TFRecords (the embedded default dataset).

Library use::

  from tfrecords_tools import synthesize
  cfg = synthesize.SynthConfig(subjects=("S1", "S9"), actions=("Walking",), num_frames=200)
  manifest = synthesize.generate("/tmp/synth", cfg, num_workers=2)

Binary::

  python -m tfrecords_tools.synthesize --output_dir=/tmp/synth --num_workers=2 \
      --subjects=S1,S9 --actions=Walking,Boxing --takes=1 --num_frames=300

Each (subject, action) is one shard holding all its takes; a record is a clip of up to
``clip_length`` kept timesteps (frames with little motion are dropped, original frame
numbers kept) of one take, all views, 3D world joints included. Crops are rendered
directly (no full image), JPEG-encoded from BGR arrays so the stored JPEG holds the
intended RGB colours (``tf.io.decode_jpeg`` returns RGB).
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import time
import zlib
from typing import Callable, Iterator, Optional, Sequence

import cv2
import numpy as np

from tfrecords_tools import cameras as cameras_lib
from tfrecords_tools import dataset_io, motion_filter, schema, skeleton
from tfrecords_tools.runtime import fileio
from tfrecords_tools.synth import body as body_lib
from tfrecords_tools.synth import clutter as clutter_lib
from tfrecords_tools.synth import motion as motion_lib
from tfrecords_tools.synth import motion_io, render, scene
from tfrecords_tools.runtime import flags as flag_engine
# The settings live below the binary (libraries take them); their names are kept here.
from tfrecords_tools.synth.config import CLUTTER_DEFAULTS, SynthConfig, SynthesizeRun
from tfrecords_tools.synth.motion_io import retarget as retarget_lib

WRITER = "tfrecords_tools.synthesize"
BINARY = WRITER
FPS = motion_lib.FPS
# Plausible human size (mm) along the foot-to-head chain of bones (home: motion_io.retarget).
BODY_CHAIN_RANGE_MM = retarget_lib.BODY_CHAIN_RANGE_MM


# Motion-import settings added after datasets existed: left out of the manifest at their
# defaults, so older datasets still resume.
_MOTION_IMPORT_FIELDS = ("motion_dir", "motion_mapping", "motion_window", "treadmill",
                         "motion_fps", "motion_units", "motion_up_axis", "motion_max_gap_ms",
                         "motion_retarget", "extra_motion_dir", "extra_motion_only",
                         "test_motion_dir", "labelled_extra_motions", "labelled_motion_only",
                         "extra_motion_mirror")
# Action-name suffix of a pool clip's mirror image (--extra_motion_mirror).
MIRROR_SUFFIX = "mirror"


def import_options(config: SynthConfig, embedded: bool = False) -> motion_io.ImportOptions:
    """The motion importer's settings of ``config`` (``embedded``: clips performed beside
    the procedural actions, looped to ``num_frames``)."""
    return motion_io.ImportOptions(
        mapping=config.motion_mapping, units=config.motion_units,
        up_axis=config.motion_up_axis, fps=config.motion_fps,
        max_gap_ms=config.motion_max_gap_ms, window=config.motion_window,
        treadmill=config.treadmill, retarget=config.motion_retarget,
        min_frames=config.num_frames if embedded else 0)


def _discover(folder: str, flag: str) -> list:
    try:
        return motion_io.discover(folder)
    except ValueError as e:
        raise ValueError(str(e).replace("--motion_dir", flag, 1)) from None


def extra_motion_sources(config: SynthConfig) -> list:
    """``(action, path)`` of ``extra_motion_dir``'s files (empty without one); with
    ``extra_motion_mirror`` each file a second time as ``<action>mirror``."""
    if config.extra_motion_dir is None:
        return []
    found = _discover(config.extra_motion_dir, "--extra_motion_dir")
    if config.extra_motion_mirror:
        found += [(a + MIRROR_SUFFIX, p) for a, p in found]
    return found


def is_mirrored(config: SynthConfig, action: str) -> bool:
    """True when ``action`` is the mirror image of a pool clip (``extra_motion_mirror``)."""
    if not config.extra_motion_mirror or config.extra_motion_dir is None:
        return False
    return action in {a + MIRROR_SUFFIX
                      for a, _ in _discover(config.extra_motion_dir, "--extra_motion_dir")}


def test_motion_sources(config: SynthConfig) -> list:
    """``(action, path)`` of ``test_motion_dir``'s files: the real-motion test actions."""
    if config.test_motion_dir is None:
        return []
    return _discover(config.test_motion_dir, "--test_motion_dir")


def embedded_sources(config: SynthConfig) -> dict:
    """action -> path of the motion files performed beside the procedural actions."""
    return dict(extra_motion_sources(config) + test_motion_sources(config))


def motion_sources(config: SynthConfig) -> list:
    """``(action, path)`` of the motion files of ``config`` (empty: procedural)."""
    if config.motion_file is not None and config.motion_dir is not None:
        raise ValueError("--motion_file and --motion_dir are exclusive; give one")
    if config.motion_file is not None:
        return [(motion_action_name(config.motion_file), config.motion_file)]
    if config.motion_dir is not None:
        return motion_io.discover(config.motion_dir)
    return []


_SOURCES: dict = {}


def motion_source(config: SynthConfig, action: str) -> motion_io.Source:
    """The imported take of ``action``'s motion file (read once per process)."""
    embedded = action in embedded_sources(config) and not config.uses_motion_files
    path = (embedded_sources(config) if embedded else dict(motion_sources(config)))[action]
    options = import_options(config)
    mirrored = embedded and is_mirrored(config, action)
    key = (os.path.abspath(path), options, mirrored)
    if key not in _SOURCES:
        if not os.path.exists(path):
            flag = "--motion_file" if config.motion_file is not None else "--motion_dir"
            raise ValueError(f"{flag} {path} does not exist")
        source = motion_io.load_source(path, options)
        if mirrored:  # left and right swap, x negated: the same motion, other-handed
            source = dataclasses.replace(source, joints=skeleton.flip_joints_camera(
                source.joints))
        _SOURCES[key] = source
    return _SOURCES[key]


def is_imported(config: SynthConfig, action: str) -> bool:
    """True when ``action``'s takes come from a motion file."""
    return config.uses_motion_files or action in embedded_sources(config)


def motion_takes(config: SynthConfig, subject: body_lib.Subject, action: str) -> list:
    """Takes [T, 17, 3] of ``action``'s motion file for ``subject``."""
    embedded = not config.uses_motion_files
    return motion_io.subject_takes(motion_source(config, action), subject.body,
                                   import_options(config, embedded))


def _rig(config: SynthConfig) -> list:
    return list(config.cameras) if config.cameras is not None else cameras_lib.h36m_rig()



def subject_actions(config: SynthConfig, subject: str) -> tuple:
    """The actions ``subject`` performs in a dataset of ``config``.

    Human3.6M-named subjects perform ``actions``; the test subjects also the held-out
    ``unseen_actions``; extra people U01... a per-person draw from ``extra_actions``.
    """
    if config.uses_motion_files:
        return tuple(a for a, _ in motion_sources(config))
    if body_lib.is_extra_subject(subject):
        pool = () if config.extra_motion_only else (
            tuple(config.extra_actions) or tuple(config.actions))
        if not config.labelled_motion_only:
            pool += tuple(a for a, _ in extra_motion_sources(config))
        k = config.extra_actions_per_subject
        if not 0 < k < len(pool):
            return pool
        rng = take_rng(config, subject, "", 0, "actions")
        pick = np.sort(rng.choice(len(pool), size=k, replace=False))
        return tuple(pool[i] for i in pick)
    if subject not in body_lib.TEST_SUBJECTS:
        return tuple(config.actions) + labelled_motion_draw(config, subject)
    return (tuple(config.actions) + tuple(config.unseen_actions)
            + tuple(a for a, _ in test_motion_sources(config)))


def labelled_motion_draw(config: SynthConfig, subject: str) -> tuple:
    """The ``extra_motion_dir`` clips a labelled training subject performs beside
    ``actions`` (``labelled_extra_motions`` of them, drawn per subject by seed)."""
    pool = tuple(a for a, _ in extra_motion_sources(config))
    k = config.labelled_extra_motions
    if k <= 0 or not pool:
        return ()
    if k >= len(pool):
        return pool
    rng = take_rng(config, subject, "", 0, "labelled_motions")
    return tuple(pool[i] for i in np.sort(rng.choice(len(pool), size=k, replace=False)))


# ----------------------------------------------------------------------------- validation

def load_motion_file(path: str) -> np.ndarray:
    """World joints [T, 17, 3] (mm, Z up, 50 fps) of a motion file, before any subject's
    retargeting (:func:`tfrecords_tools.synth.motion_io.load_source` with defaults).

    Raises:
      ValueError: naming the file and what is wrong (shape, NaN, units, format).
    """
    if not os.path.exists(path):
        raise ValueError(f"--motion_file {path} does not exist")
    return motion_io.load_source(path).joints


def validate(config: SynthConfig) -> Optional[np.ndarray]:
    """Checks every setting; returns the motion file's joints (if any).

    Raises:
      ValueError: naming the setting (flag) and value at fault and what was expected: the
        declared ranges first (:func:`~tfrecords_tools.runtime.flags.check_ranges`), then
        subjects, actions and the relations between settings.
    """
    flag_engine.check_ranges(config)
    unknown = [s for s in config.subjects if not body_lib.is_synthetic_subject(s)]
    if unknown or not config.subjects:
        raise ValueError(f"--subjects: unknown subject(s) {unknown or '(none given)'}; expected "
                         f"names from {list(body_lib.KNOWN_SUBJECTS)} or extra people "
                         f"U01..U{body_lib.MAX_EXTRA_SUBJECTS:02d}")
    if len(set(config.subjects)) != len(config.subjects):
        raise ValueError(f"--subjects: duplicates in {list(config.subjects)}")
    if not config.uses_motion_files:
        bad = [a for a in config.actions if a not in motion_lib.ACTIONS]
        if bad or not config.actions:
            raise ValueError(f"--actions: unknown action(s) {bad or '(none given)'}; expected "
                             f"names from {list(motion_lib.ACTIONS)}")
        for name, values in (("actions", config.actions), ("extra_actions", config.extra_actions),
                             ("unseen_actions", config.unseen_actions)):
            if len(set(values)) != len(values):
                raise ValueError(f"--{name}: duplicates in {list(values)}")
        allowed = motion_lib.ACTIONS + motion_lib.EXTRA_ACTIONS
        bad = [a for a in config.extra_actions if a not in allowed]
        if bad:
            raise ValueError(f"--extra_actions: {bad} cannot be given to the extra people; "
                             f"expected names from {list(allowed)} (the held-out families "
                             f"{list(motion_lib.UNSEEN_ACTIONS)} stay test-only)")
        bad = [a for a in config.unseen_actions if a not in motion_lib.UNSEEN_ACTIONS]
        if bad:
            raise ValueError(f"--unseen_actions: unknown family(ies) {bad}; expected names from "
                             f"{list(motion_lib.UNSEEN_ACTIONS)}")
    if config.motion_window and config.motion_window < schema.MIN_CLIP_LENGTH:
        raise ValueError(f"--motion_window={config.motion_window}: expected 0 (whole file) or "
                         f">= {schema.MIN_CLIP_LENGTH} frames")
    if config.has_clutter and not config.background:
        on = [k for k, v in CLUTTER_DEFAULTS.items() if getattr(config, k) != v]
        raise ValueError(f"--{on[0]}: clutter needs --background (the black look is the "
                         f"background-removed one, which has no scene to clutter)")
    _validate_embedded(config)
    sources = motion_sources(config)
    if not sources:
        return None
    if config.motion_mapping is not None:
        motion_io.mapping.load_table(config.motion_mapping)
    for action, path in sources:
        for name in config.subjects:
            subject = body_lib.make_subject(name, config.seed)
            for k, joints in enumerate(motion_takes(config, subject, action)):
                _check_in_view(config, path, joints, k)
    return motion_source(config, sources[0][0]).joints


def _validate_embedded(config: SynthConfig) -> None:
    """Checks ``extra_motion_dir`` / ``test_motion_dir``: names, overlap, every take."""
    if config.labelled_extra_motions and config.extra_motion_dir is None:
        raise ValueError("--labelled_extra_motions needs --extra_motion_dir (the clips are "
                         "drawn from it)")
    if config.labelled_motion_only and not config.labelled_extra_motions:
        raise ValueError("--labelled_motion_only needs --labelled_extra_motions > 0 (no one "
                         "would perform --extra_motion_dir's clips)")
    if config.extra_motion_mirror and config.extra_motion_dir is None:
        raise ValueError("--extra_motion_mirror needs --extra_motion_dir (the clips it "
                         "mirrors)")
    if config.labelled_motion_only and config.extra_motion_only:
        raise ValueError("--labelled_motion_only and --extra_motion_only contradict: the extra "
                         "people would have no motion left; give one")
    if config.extra_motion_dir is None and config.test_motion_dir is None:
        if config.extra_motion_only:
            raise ValueError("--extra_motion_only needs --extra_motion_dir (the pool would be "
                             "empty)")
        return
    if config.uses_motion_files:
        raise ValueError("--extra_motion_dir/--test_motion_dir add imported motion beside the "
                         "procedural actions; with --motion_file/--motion_dir every take is "
                         "imported already: give one or the other")
    procedural = set(motion_lib.ACTIONS + motion_lib.EXTRA_ACTIONS + motion_lib.UNSEEN_ACTIONS)
    extra, test = extra_motion_sources(config), test_motion_sources(config)
    for flag, sources in (("--extra_motion_dir", extra), ("--test_motion_dir", test)):
        clash = sorted(procedural.intersection(a for a, _ in sources))
        if clash:
            raise ValueError(f"{flag}: file(s) named like procedural actions {clash}; rename "
                             f"them (the action is the file's stem)")
    names = [a for a, _ in extra]
    if len(set(names)) != len(names):
        twice = sorted(a for a in set(names) if names.count(a) > 1)
        raise ValueError(f"--extra_motion_dir: file(s) named like another's mirror image "
                         f"{twice}; rename them or drop --extra_motion_mirror")
    both = sorted({a for a, _ in extra} & {a for a, _ in test})
    if both:
        raise ValueError(f"--extra_motion_dir and --test_motion_dir both hold action(s) {both}; "
                         f"the real-motion test clips must stay out of training")
    sums = {fileio.sha256_file(p): p for _, p in extra}
    same = [(sums[h], p) for _, p in test for h in [fileio.sha256_file(p)] if h in sums]
    if same:
        raise ValueError(f"--test_motion_dir {same[0][1]} is the same file as "
                         f"--extra_motion_dir {same[0][0]}; the test clips must stay out of "
                         f"training")
    for flag, sources in (("--extra_motion_dir", extra), ("--test_motion_dir", test)):
        motion_notes(sources, flag)
    for name in config.subjects:
        mine = [a for a in subject_actions(config, name) if a in embedded_sources(config)]
        if not mine:
            continue
        subject = body_lib.make_subject(name, config.seed)
        for action in mine:
            for k, joints in enumerate(motion_takes(config, subject, action)):
                _check_in_view(config, embedded_sources(config)[action], joints, k)


SOURCE_NOTE = "SOURCE.json"


def motion_notes(sources: list, flag: str) -> list:
    """Manifest entries of imported motion files: action, name, sha256, source, licence.

    Source and licence come from a ``SOURCE.json`` beside the files (``{"files": {name:
    {"source", "licence", "sha256"}}}``, as in ``tfrecords_tools/synth/real_motion``);
    without one they are ``"unknown"``.

    Raises:
      ValueError: a file's sha256 differs from its note (naming ``flag`` and the file).
    """
    out, notes = [], {}
    for action, path in sources:
        folder = os.path.dirname(path)
        if folder not in notes:
            note_path = os.path.join(folder, SOURCE_NOTE)
            try:
                with open(note_path, encoding="utf-8") as f:
                    notes[folder] = json.load(f).get("files", {})
            except FileNotFoundError:
                notes[folder] = {}
            except (OSError, ValueError, AttributeError) as e:
                raise ValueError(f"{flag}: {note_path} is not a readable JSON note "
                                 f"({type(e).__name__}: {e}); expected {{\"files\": {{name: "
                                 f"{{\"source\", \"licence\", \"sha256\"}}}}}}") from None
        for f in motion_io.files_of(path):
            name = os.path.basename(f)
            note = notes[folder].get(name, {})
            digest = fileio.sha256_file(f)
            if note.get("sha256") not in (None, digest):
                raise ValueError(f"{flag} {f}: sha256 {digest} differs from its {SOURCE_NOTE} "
                                 f"note {note['sha256']}; the file changed since it was noted")
            out.append({"action": action, "name": name, "sha256": digest,
                        "source": note.get("source", "unknown"),
                        "licence": note.get("licence", "unknown")})
    return out


def _check_in_view(config: SynthConfig, path: str, joints: np.ndarray, take: int) -> None:
    for cam in _rig(config):
        z = cam.world_to_camera(joints)[..., 2]
        if z.min() < 300:
            t = int(np.argmin(z.min(1)))
            where = f"take {take + 1} " if take else ""
            raise ValueError(f"motion file {path}: {where}frame {t} is behind or too close "
                             f"to camera {cam.camera_id} (depth {z.min():.0f} mm); expected the "
                             f"person inside the capture volume around the world origin "
                             f"(--treadmill or --motion_window keep long walks inside)")


def motion_action_name(path: str) -> str:
    """Action name under which a motion file is stored (its file stem, sanitised)."""
    return motion_io.action_name(path)


def settings_of(config: SynthConfig) -> dict:
    """JSON-able settings stored in the manifest (a motion file is identified by checksum)."""
    s = dataclasses.asdict(config)
    defaults = SynthConfig()
    for name in _MOTION_IMPORT_FIELDS:
        if getattr(config, name) == getattr(defaults, name):
            del s[name]
    for key, off in CLUTTER_DEFAULTS.items():
        if s[key] == off:
            del s[key]
    if config.motion_file is not None:
        s["motion_file_sha256"] = fileio.sha256_file(config.motion_file)
    if config.uses_motion_files:
        options = import_options(config)
        extra = {os.path.basename(f): fileio.sha256_file(f)
                 for _, path in motion_sources(config) for f in motion_io.files_of(path, options)
                 if f != config.motion_file}
        if extra:
            s["motion_files_sha256"] = extra
    if config.extra_motion_dir is not None:
        s["extra_motion_files"] = motion_notes(extra_motion_sources(config),
                                               "--extra_motion_dir")
    if config.test_motion_dir is not None:
        s["test_motion_files"] = motion_notes(test_motion_sources(config), "--test_motion_dir")
        s["test_motion_actions"] = [a for a, _ in test_motion_sources(config)]
    if config.cameras is not None:
        s["cameras"] = [{"id": c.camera_id, "intrinsics": c.intrinsics.tolist(),
                         "size": [c.width, c.height], "rotation": np.ravel(c.rotation).tolist(),
                         "translation": np.ravel(c.translation).tolist(),
                         "distortion": np.ravel(c.distortion).tolist()} for c in config.cameras]
    s["fps"] = FPS
    return s


# ----------------------------------------------------------------------------- producing

@dataclasses.dataclass(frozen=True)
class _Payload:
    config: SynthConfig
    subject: str
    action: str


_BACKGROUNDS: dict = {}


def _backgrounds(config: SynthConfig, rig) -> Optional[list]:
    """Per-camera BGR room images, rendered once per process (cached)."""
    if not config.background:
        return None
    out = []
    for cam in rig:
        key = (cam.camera_id, config.seed, cam.width, cam.height, config.textured_room)
        if key not in _BACKGROUNDS:
            _BACKGROUNDS[key] = np.ascontiguousarray(scene.render_background(
                cam, config.seed, textured=config.textured_room)[..., ::-1])
        out.append(_BACKGROUNDS[key])
    return out


def take_rng(config: SynthConfig, subject: str, action: str, take: int, salt: str = ""
             ) -> np.random.Generator:
    """Deterministic generator for one take (independent of worker and order)."""
    return np.random.default_rng([config.seed & 0xFFFFFFFF, zlib.crc32(subject.encode()),
                                  zlib.crc32(action.encode()), take, zlib.crc32(salt.encode())])


def take_motion(config: SynthConfig, subject: body_lib.Subject, action: str, take: int
                ) -> np.ndarray:
    """World joints [T, 17, 3] of one take (procedural or from a motion file)."""
    if is_imported(config, action):
        return motion_takes(config, subject, action)[take]
    return motion_lib.generate_motion(subject, action, config.num_frames,
                                      take_rng(config, subject.name, action, take),
                                      fps=FPS, style_seed=config.seed)


def crop_boxes(joints: np.ndarray, rig, margin: float, jitter: float,
               rng: np.random.Generator) -> np.ndarray:
    """Square person-centred boxes [T, V, 4] around the projected joints, jittered.

    The top of the head lies beyond the Head joint, so a point 12 cm further along the
    neck-head direction is included; the margin covers hands, feet and limb thickness.
    """
    t_count, v_count = len(joints), len(rig)
    boxes = np.zeros((t_count, v_count, 4))
    up = joints[:, 10] - joints[:, 8]
    crown = joints[:, 10] + 120.0 * up / np.maximum(np.linalg.norm(up, axis=-1, keepdims=True), 1)
    pts = np.concatenate([joints, crown[:, None]], 1)
    for v, cam in enumerate(rig):
        uv = cam.project(pts)  # [T, 18, 2]
        lo, hi = uv.min(1), uv.max(1)
        side = (hi - lo).max(-1) * (1 + 2 * margin)
        centre = (lo + hi) / 2
        if jitter > 0:
            side = side * (1 + rng.uniform(-jitter, jitter, t_count))
            centre = centre + rng.uniform(-jitter, jitter, (t_count, 2)) * side[:, None]
        side = np.maximum(side, 16.0)
        boxes[:, v] = np.concatenate([centre - side[:, None] / 2, centre + side[:, None] / 2], -1)
    return boxes


def encode_jpeg(image_bgr: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a BGR image (decoders return the RGB colours)."""
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("cv2.imencode failed to encode a JPEG")
    return buf.tobytes()


def take_clips(config: SynthConfig, subject_name: str, action: str, take: int,
               joints: Optional[np.ndarray] = None) -> Iterator[schema.Clip]:
    """Renders one take and yields its records (clips of kept timesteps)."""
    rig = _rig(config)
    subject = body_lib.make_subject(subject_name, config.seed)
    if config.look_variation == "take":
        subject = dataclasses.replace(
            subject, look=body_lib.take_look(subject, config.seed, f"{action}/{take}"))
    if joints is None:
        joints = take_motion(config, subject, action, take)
    keep = np.flatnonzero(motion_filter.moving_frames_3d(joints, config.min_motion_mm))
    rng = take_rng(config, subject_name, action, take, "crops")
    boxes = crop_boxes(joints[keep], rig, config.crop_margin, config.crop_jitter, rng)
    bgs = _backgrounds(config, rig)
    clutter = None
    if config.has_clutter:
        clutter = clutter_lib.plan_take(
            joints, take_rng(config, subject_name, action, take, "clutter"),
            bystanders=config.bystanders, moving_objects=config.moving_objects,
            lighting=config.lighting, sensor_noise=config.sensor_noise, seed=config.seed)
    intrinsics = np.stack([c.intrinsics for c in rig])
    distortion = np.stack([c.distortion for c in rig])
    rotation = np.stack([c.rotation for c in rig])
    translation = np.stack([c.translation for c in rig])
    image_wh = np.array([[c.width, c.height] for c in rig])
    for ci, start in enumerate(range(0, len(keep), config.clip_length)):
        idx = keep[start:start + config.clip_length]
        box = boxes[start:start + config.clip_length]
        encoded = [[b""] * len(rig) for _ in idx]
        for t, v, img in render.iter_render(joints[idx], rig, subject, box, config.image_size,
                                            bgs, _clutter_at(clutter, idx)):
            encoded[t][v] = encode_jpeg(img, config.jpeg_quality)
        yield schema.Clip(
            subject=subject_name, action=action, sequence_id=f"{subject_name}/{action} {take + 1}",
            fps=FPS, clip_index=ci, frame_index=idx.astype(np.int64),
            camera_ids=[c.camera_id for c in rig], intrinsics=intrinsics, distortion=distortion,
            rotation=rotation, translation=translation, image_wh=image_wh,
            image_size=config.image_size, has_background=config.background, images=encoded,
            crop_boxes=box, joints3d_world=joints[idx] if config.labels else None)


def _clutter_at(clutter: Optional[clutter_lib.TakeClutter], idx: np.ndarray
                ) -> Optional[clutter_lib.TakeClutter]:
    """The take's clutter at frames ``idx`` (one record's kept frames)."""
    if clutter is None:
        return None
    return dataclasses.replace(
        clutter, people=tuple((s, j[idx]) for s, j in clutter.people),
        objects=tuple(dataclasses.replace(o, centre=o.centre[idx], yaw=o.yaw[idx])
                      for o in clutter.objects),
        gain=None if clutter.gain is None else clutter.gain[idx],
        noise_seed=clutter.noise_seed + int(idx[0]))


def _produce(payload: _Payload) -> Iterator[schema.Clip]:
    """dataset_io producer: all takes of one (subject, action)."""
    if multiprocessing.parent_process() is not None:
        cv2.setNumThreads(1)  # one worker per core already: OpenCV threads would oversubscribe
    cfg = payload.config
    if is_imported(cfg, payload.action):
        subject = body_lib.make_subject(payload.subject, cfg.seed)
        takes = len(motion_takes(cfg, subject, payload.action))
    else:
        takes = cfg.takes
    for take in range(takes):
        yield from take_clips(cfg, payload.subject, payload.action, take)


def shard_name(subject: str, action: str) -> str:
    return f"{subject}-{action}"


def generate(output_dir: str, config: SynthConfig, num_workers: int = 1,
             log: Callable[[str], None] = print, runner: str = "local",
             beam_options=()) -> dict:
    """Writes (or resumes writing) a synthetic dataset; returns its manifest (``runner``:
    local processes or an Apache Beam runner, :mod:`tfrecords_tools.beam_io`).

    Raises:
      ValueError: a setting is invalid (nothing is written).
      dataset_io.DatasetError: ``output_dir`` holds a dataset of another schema version
        or other settings (nothing is written).
    """
    if num_workers < 1:
        raise ValueError(f"--num_workers={num_workers}: expected an integer >= 1")
    validate(config)
    tasks = [dataset_io.ShardTask(shard_name(s, a), _Payload(config, s, a))
             for s in config.subjects for a in subject_actions(config, s)]
    start = time.time()
    manifest = dataset_io.write_dataset(
        output_dir, writer=WRITER, settings=settings_of(config), tasks=tasks, producer=_produce,
        num_workers=num_workers, log=log, runner=runner, beam_options=beam_options)
    tot = manifest["totals"]
    log(f"{output_dir}: {tot['num_records']} records, {tot['num_frames']} timesteps, "
        f"{tot['num_images']} images in {len(tasks)} shards ({time.time() - start:.1f} s)")
    return manifest


# ----------------------------------------------------------------------------- binary

def config_from_flags(f=None) -> SynthConfig:
    """The :class:`SynthConfig` of parsed flags (``f``: a ``FlagValues`` with
    :func:`define_flags`' flags; default absl's global FLAGS).

    Raises:
      ValueError: a flag outside its declared range (names it).
    """
    return flag_engine.from_flags(SynthesizeRun, f).config()


def main(argv: Sequence[str]) -> None:
    from tfrecords_tools.runtime import cli
    cli.check_no_arguments(argv)
    flag_engine.warn_deprecated(BINARY)
    run = flag_engine.from_flags(SynthesizeRun)
    # Errors (a bad flag or file) end as one line: see tfrecords_tools.runtime.cli.
    generate(run.output_dir, run.config(), num_workers=run.num_workers,
             runner=run.runner, beam_options=run.beam_options)


def define_flags(fv=None) -> None:
    """Defines the binary's flags on ``fv`` (default: absl's global FLAGS): one per setting
    of :class:`SynthesizeRun`."""
    flag_engine.define_flags(SynthesizeRun, fv, binary=BINARY)


if __name__ == "__main__":
    from tfrecords_tools.runtime import cli
    define_flags()
    cli.run(main)
