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
from tfrecords_tools import dataset_io, motion_filter, schema
from tfrecords_tools.runtime import fileio
from tfrecords_tools.synth import body as body_lib
from tfrecords_tools.synth import clutter as clutter_lib
from tfrecords_tools.synth import motion as motion_lib
from tfrecords_tools.synth import motion_io, render, scene
from tfrecords_tools.synth.motion_io import retarget as retarget_lib

WRITER = "tfrecords_tools.synthesize"
FPS = motion_lib.FPS
# Plausible human size (mm) along the foot-to-head chain of bones (home: motion_io.retarget).
BODY_CHAIN_RANGE_MM = retarget_lib.BODY_CHAIN_RANGE_MM


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Settings of a synthetic dataset (all stored in the manifest).

    Attributes:
      subjects: Human3.6M-style subject names (S1 ... S11) and extra synthetic people
        (U01 ... U99, see ``--extra_subjects``), each with its own body and look.
      actions: procedural actions (see :data:`tfrecords_tools.synth.motion.ACTIONS`).
      takes: takes per (subject, action), each with its own random variation.
      num_frames: frames per take at 50 fps, before the motion filter.
      clip_length: kept timesteps per record (256 fits pairs up to d_max=128 apart).
      image_size: crop side in pixels.
      background: False for the black background-removed look, True for a static room.
      min_motion_mm: a frame is kept when some joint (root-relative) moved more than this
        since the last kept frame (0 keeps all). 4 mm keeps about 73% of the procedural
        frames, close to the paper's "on average every fourth frame dropped".
      seed: fixes bodies, looks, motions, crops; same seed, same bytes.
      motion_file: optional motion file rendered for every subject instead of the
        procedural actions, under the action name of its stem
        (:func:`tfrecords_tools.synth.motion_io.action_name`): the generator's .npz
        (``joints3d_world`` [T, 17, 3] mm, rendered as given), or motion capture (.bvh,
        .amc with its .asf, .c3d, AMASS-style .npz ``joints``) imported by
        :mod:`tfrecords_tools.synth.motion_io` and retargeted to each subject.
      motion_dir: a folder of motion files (not recursive), each one action named by its
        stem; exclusive with ``motion_file``.
      motion_mapping: JSON file mapping the 17 joints to the file's joints/markers (a name,
        a list to average, ``{"from", "to", "t"}``); default: the built-in tables
        (:mod:`tfrecords_tools.synth.motion_io.mapping`).
      motion_window: frames (50 fps) per take: a file is cut into consecutive windows,
        each a take (0: one take per file).
      treadmill: remove the pelvis' horizontal position per frame (heading kept): long
        walks stay in the capture volume.
      motion_fps: frame rate of the motion files when they store none or a wrong one (0:
        from the file; AMC: 120).
      motion_units: ``auto`` (declared by the file, else inferred from the body's size) or
        mm, cm, in, m.
      motion_up_axis: ``auto`` (the format's convention: BVH/ASF Y, C3D/npz Z), y or z.
      motion_max_gap_ms: C3D gaps up to this long are interpolated; longer ones refused.
      motion_retarget: give each subject its own bone lengths (False: the capture's).
      crop_margin: crop box margin around the projected joints (fraction of the side).
      crop_jitter: random crop shift/scale as a fraction of the side (augmentation-like
        variation real detectors have).
      jpeg_quality: JPEG quality 1-100.
      labels: store 3D joints (False writes an unlabelled dataset, like raw video).
      cameras: camera rig; None = the Human3.6M rig (cameras.h36m_rig()).
      look_variation: ``"subject"``: one look per person (as Human3.6M subjects wear one
        outfit); ``"take"``: a new outfit per take, with the asymmetric cues (strap, watch,
        stripe) on sides drawn per take, so no per-person left/right cue can solve the flip
        task (:func:`tfrecords_tools.synth.body.take_look`).
      extra_actions: the motion pool of the extra people U01...: standard actions and
        pre-training-only families (:data:`~tfrecords_tools.synth.motion.EXTRA_ACTIONS`).
        Empty: the extra people perform ``actions``, like everyone else.
      extra_actions_per_subject: each extra person performs this many actions of the pool,
        drawn per person by seed (0: all of them). Many people, each in a few motions, cost
        no more frames than few people in many.
      unseen_actions: held-out motion families
        (:data:`~tfrecords_tools.synth.motion.UNSEEN_ACTIONS`) performed only by the test
        subjects (S9, S11): the unseen-motion test set. Never given to anyone else.
      extra_motion_dir: a folder of motion files (any importer format, each one action
        named by its stem) added to the extra people's pool beside the procedural actions;
        imported like ``motion_dir`` (``motion_window``, ``treadmill``, retargeting) and
        looped to ``num_frames`` (cyclic DeepMimic clips repeat, others play back and forth).
      extra_motion_only: leave the procedural actions out of the extra people's pool.
      test_motion_dir: a folder of motion files performed only by the test subjects (S9,
        S11): the real-motion test set (clips never given to anyone else; imported and looped
        as ``extra_motion_dir``).
      bystanders: clutter: other people (own bodies and looks) walking around near the
        labelled person, crossing in front of or behind them; never labelled.
      moving_objects: clutter: boxes and balls crossing the scene (rolling, carried, thrown).
      lighting: clutter: ``"constant"``; ``"drift"`` (brightness and colour balance drift by
        20-35% over the take); ``"switch"`` (a light switches on or off mid-take).
      sensor_noise: clutter: Gaussian noise per pixel, standard deviation in grey levels.
      textured_room: clutter: textured walls and floor, posters and furniture-like boxes.
      (Clutter needs ``background``; all clutter off, the default, leaves datasets
      byte-identical to those made before it existed; see
      :mod:`tfrecords_tools.synth.clutter`.)
    """

    subjects: tuple = body_lib.KNOWN_SUBJECTS
    actions: tuple = motion_lib.ACTIONS
    takes: int = 2
    num_frames: int = 500
    clip_length: int = 256
    image_size: int = 160
    background: bool = False
    min_motion_mm: float = 4.0
    seed: int = 0
    motion_file: Optional[str] = None
    crop_margin: float = 0.22
    crop_jitter: float = 0.04
    jpeg_quality: int = 90
    labels: bool = True
    cameras: Optional[tuple] = None
    look_variation: str = "subject"
    extra_actions: tuple = ()
    extra_actions_per_subject: int = 0
    unseen_actions: tuple = ()
    motion_dir: Optional[str] = None
    motion_mapping: Optional[str] = None
    motion_window: int = 0
    treadmill: bool = False
    motion_fps: float = 0.0
    motion_units: str = "auto"
    motion_up_axis: str = "auto"
    motion_max_gap_ms: float = 100.0
    motion_retarget: bool = True
    extra_motion_dir: Optional[str] = None
    extra_motion_only: bool = False
    test_motion_dir: Optional[str] = None
    bystanders: int = 0
    moving_objects: int = 0
    lighting: str = "constant"
    sensor_noise: float = 0.0
    textured_room: bool = False

    @property
    def uses_motion_files(self) -> bool:
        """True when takes come from motion files instead of the procedural actions."""
        return self.motion_file is not None or self.motion_dir is not None

    @property
    def has_clutter(self) -> bool:
        return any(getattr(self, k) != v for k, v in CLUTTER_DEFAULTS.items())


# The clutter settings and their "off" values (left out of the manifest when off, so
# datasets made before clutter existed still resume).
CLUTTER_DEFAULTS = {"bystanders": 0, "moving_objects": 0, "lighting": "constant",
                    "sensor_noise": 0.0, "textured_room": False}


# Motion-import settings added after datasets existed: left out of the manifest at their
# defaults, so older datasets still resume.
_MOTION_IMPORT_FIELDS = ("motion_dir", "motion_mapping", "motion_window", "treadmill",
                         "motion_fps", "motion_units", "motion_up_axis", "motion_max_gap_ms",
                         "motion_retarget", "extra_motion_dir", "extra_motion_only",
                         "test_motion_dir")


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
    """``(action, path)`` of ``extra_motion_dir``'s files (empty without one)."""
    if config.extra_motion_dir is None:
        return []
    return _discover(config.extra_motion_dir, "--extra_motion_dir")


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
    key = (os.path.abspath(path), options)
    if key not in _SOURCES:
        if not os.path.exists(path):
            flag = "--motion_file" if config.motion_file is not None else "--motion_dir"
            raise ValueError(f"{flag} {path} does not exist")
        _SOURCES[key] = motion_io.load_source(path, options)
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


LOOK_VARIATIONS = ("subject", "take")


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
        pool += tuple(a for a, _ in extra_motion_sources(config))
        k = config.extra_actions_per_subject
        if not 0 < k < len(pool):
            return pool
        rng = take_rng(config, subject, "", 0, "actions")
        pick = np.sort(rng.choice(len(pool), size=k, replace=False))
        return tuple(pool[i] for i in pick)
    if subject not in body_lib.TEST_SUBJECTS:
        return tuple(config.actions)
    return (tuple(config.actions) + tuple(config.unseen_actions)
            + tuple(a for a, _ in test_motion_sources(config)))


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
      ValueError: naming the setting (flag) and value at fault and what was expected.
    """
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
    if config.look_variation not in LOOK_VARIATIONS:
        raise ValueError(f"--look_variation={config.look_variation}: expected one of "
                         f"{list(LOOK_VARIATIONS)}")
    if config.extra_actions_per_subject < 0:
        raise ValueError(f"--extra_actions_per_subject {config.extra_actions_per_subject} is "
                         f"invalid; expected >= 0 (0: every action of the pool)")
    if not schema.MIN_IMAGE_SIZE <= config.image_size <= schema.MAX_IMAGE_SIZE:
        raise ValueError(f"--image_size {config.image_size} outside the sane range "
                         f"[{schema.MIN_IMAGE_SIZE}, {schema.MAX_IMAGE_SIZE}] pixels")
    checks = (("takes", config.takes >= 1, ">= 1"),
              ("num_frames", config.num_frames >= schema.MIN_CLIP_LENGTH,
               f">= {schema.MIN_CLIP_LENGTH} (room for an unsynchronized pair)"),
              ("clip_length", config.clip_length >= schema.MIN_CLIP_LENGTH,
               f">= {schema.MIN_CLIP_LENGTH} (room for an unsynchronized pair)"),
              ("min_motion_mm", 0 <= config.min_motion_mm < 500, "in [0, 500)"),
              ("crop_margin", 0 <= config.crop_margin <= 1, "in [0, 1]"),
              ("crop_jitter", 0 <= config.crop_jitter <= 0.25, "in [0, 0.25]"),
              ("jpeg_quality", 1 <= config.jpeg_quality <= 100, "in [1, 100]"),
              ("motion_window", config.motion_window == 0 or
               config.motion_window >= schema.MIN_CLIP_LENGTH,
               f"0 (whole file) or >= {schema.MIN_CLIP_LENGTH} frames"),
              ("motion_fps", 0 <= config.motion_fps <= 10000, "0 (from the file) or a rate"),
              ("motion_max_gap_ms", 0 <= config.motion_max_gap_ms <= 10000, "in [0, 10000]"),
              ("motion_units", config.motion_units in motion_io.UNITS,
               f"one of {list(motion_io.UNITS)}"),
              ("motion_up_axis", config.motion_up_axis in motion_io.UP_AXES,
               f"one of {list(motion_io.UP_AXES)}"),
              ("bystanders", 0 <= config.bystanders <= clutter_lib.MAX_BYSTANDERS,
               f"in [0, {clutter_lib.MAX_BYSTANDERS}]"),
              ("moving_objects", 0 <= config.moving_objects <= clutter_lib.MAX_OBJECTS,
               f"in [0, {clutter_lib.MAX_OBJECTS}]"),
              ("lighting", config.lighting in clutter_lib.LIGHTING,
               f"one of {list(clutter_lib.LIGHTING)}"),
              ("sensor_noise", 0 <= config.sensor_noise <= clutter_lib.MAX_NOISE,
               f"in [0, {clutter_lib.MAX_NOISE:g}] grey levels"))
    for name, ok, expected in checks:
        if not ok:
            raise ValueError(f"--{name} {getattr(config, name)} is invalid; expected {expected}")
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
        raise ValueError(f"--num_workers {num_workers} is invalid; expected >= 1")
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

def config_from_flags(f) -> SynthConfig:
    """The :class:`SynthConfig` of parsed flags (``f``: a ``FlagValues`` with
    :func:`define_flags`' flags).

    Raises:
      ValueError: ``--extra_subjects`` out of range.
    """
    try:
        extra = body_lib.extra_subjects(f.extra_subjects)
    except ValueError as e:
        raise ValueError(f"--extra_subjects={f.extra_subjects}: must lie in "
                         f"[0, {body_lib.MAX_EXTRA_SUBJECTS}]") from e
    return SynthConfig(
        subjects=tuple(f.subjects) + extra, actions=tuple(f.actions), takes=f.takes,
        num_frames=f.num_frames, clip_length=f.clip_length, image_size=f.image_size,
        background=f.background, min_motion_mm=f.min_motion_mm, seed=f.seed,
        motion_file=f.motion_file, crop_margin=SynthConfig.crop_margin,
        crop_jitter=f.crop_jitter, jpeg_quality=f.jpeg_quality, labels=f.labels,
        look_variation=f.look_variation, extra_actions=tuple(f.extra_actions),
        extra_actions_per_subject=f.extra_actions_per_subject,
        unseen_actions=tuple(f.unseen_actions), motion_dir=f.motion_dir,
        motion_mapping=f.motion_mapping, motion_window=f.motion_window, treadmill=f.treadmill,
        motion_fps=f.motion_fps, motion_units=f.motion_units, motion_up_axis=f.motion_up_axis,
        motion_max_gap_ms=f.motion_max_gap_ms, motion_retarget=f.motion_retarget,
        extra_motion_dir=f.extra_motion_dir, extra_motion_only=f.extra_motion_only,
        test_motion_dir=f.test_motion_dir,
        bystanders=f.bystanders,
        moving_objects=f.moving_objects, lighting=f.lighting, sensor_noise=f.sensor_noise,
        textured_room=f.textured_room)


def main(argv: Sequence[str]) -> None:
    from absl import flags
    from tfrecords_tools.runtime import cli
    cli.check_no_arguments(argv)
    f = flags.FLAGS
    # Errors (a bad flag or file) end as one line: see tfrecords_tools.runtime.cli.
    generate(f.output_dir, config_from_flags(f), num_workers=f.num_workers)


def define_flags(fv=None) -> None:
    """Defines the binary's flags on ``fv`` (default: absl's global FLAGS)."""
    from absl import flags
    fv = fv if fv is not None else flags.FLAGS
    d = SynthConfig()
    for kind, name, default, text in (
            ("string", "output_dir", None, "Dataset directory (created; resumed if present)."),
            ("list", "subjects", list(d.subjects), "Subjects to generate."),
            ("integer", "extra_subjects", 0,
             "Also generate N extra synthetic people U01..UN (extra unlabelled pre-training "
             "subjects; pass them to pretrain --train_subjects, e.g. as U*)."),
            ("list", "actions", list(d.actions), "Actions to generate."),
            ("integer", "takes", d.takes, "Takes per (subject, action)."),
            ("integer", "num_frames", d.num_frames, "Frames per take (50 fps)."),
            ("integer", "clip_length", d.clip_length, "Kept timesteps per record."),
            ("integer", "image_size", d.image_size, "Crop side in pixels."),
            ("bool", "background", d.background, "Render the static room behind the person."),
            ("float", "min_motion_mm", d.min_motion_mm,
             "Drop frames where no joint moved this much since the last kept one."),
            ("integer", "seed", d.seed, "Random seed (same seed, same dataset)."),
            ("string", "motion_file", None,
             "Optional motion file rendered instead of the procedural actions (action = its "
             "stem): the generator's .npz (joints3d_world [T, 17, 3] mm, as given) or motion "
             "capture: .bvh, .amc (+ .asf beside it), .c3d, AMASS .npz (joints, metres)."),
            ("string", "motion_dir", None,
             "Folder of motion files (as --motion_file), each one action named by its stem."),
            ("string", "motion_mapping", None,
             "JSON: the 17 joints -> the file's joint/marker names (a name, a list to average, "
             "{from, to, t}); default: the built-in CMU/Mixamo BVH, CMU ASF, SMPL, Plug-in "
             "Gait tables."),
            ("integer", "motion_window", d.motion_window,
             "Cut each motion file into takes of this many frames at 50 fps (0: one take)."),
            ("bool", "treadmill", d.treadmill,
             "Remove the pelvis' horizontal motion per frame (heading kept): walk in place."),
            ("float", "motion_fps", d.motion_fps,
             "Frame rate of the motion files if they store none (0: from the file; AMC 120)."),
            ("float", "motion_max_gap_ms", d.motion_max_gap_ms,
             "C3D marker gaps up to this long are interpolated; longer ones are refused."),
            ("bool", "motion_retarget", d.motion_retarget,
             "Give each subject its own bone lengths (directions from the capture)."),
            ("float", "crop_jitter", d.crop_jitter, "Crop box jitter (fraction of the side)."),
            ("integer", "jpeg_quality", d.jpeg_quality, "JPEG quality."),
            ("bool", "labels", d.labels, "Store 3D joints."),
            ("list", "extra_actions", list(d.extra_actions),
             "Motion pool of the extra people (standard actions and the pre-training families "
             f"{list(motion_lib.EXTRA_ACTIONS)}); empty: --actions."),
            ("integer", "extra_actions_per_subject", d.extra_actions_per_subject,
             "Actions of the pool each extra person performs (drawn per person; 0: all)."),
            ("list", "unseen_actions", list(d.unseen_actions),
             "Held-out motion families only the test subjects S9/S11 perform (the unseen-motion "
             f"test set), from {list(motion_lib.UNSEEN_ACTIONS)}."),
            ("string", "extra_motion_dir", None,
             "Folder of motion files (as --motion_dir) added to the extra people's pool beside "
             "the procedural actions; looped to --num_frames (e.g. "
             "tfrecords_tools/synth/real_motion/pool)."),
            ("bool", "extra_motion_only", d.extra_motion_only,
             "Leave the procedural actions out of the extra people's pool."),
            ("string", "test_motion_dir", None,
             "Folder of motion files only S9/S11 perform: the real-motion test set (e.g. "
             "tfrecords_tools/synth/real_motion/heldout)."),
            ("integer", "bystanders", d.bystanders,
             "Clutter: other people walking around near the labelled one (never labelled; "
             "needs --background)."),
            ("integer", "moving_objects", d.moving_objects,
             "Clutter: boxes and balls crossing the scene (needs --background)."),
            ("float", "sensor_noise", d.sensor_noise,
             "Clutter: Gaussian sensor noise, standard deviation in grey levels."),
            ("bool", "textured_room", d.textured_room,
             "Clutter: textured walls and floor, posters and furniture (needs --background)."),
            ("integer", "num_workers", 1, "Parallel writer processes.")):
        getattr(flags, f"DEFINE_{kind}")(name, default, text, flag_values=fv)
    flags.DEFINE_enum("motion_units", d.motion_units, list(motion_io.UNITS),
                      "Units of the motion files: auto (declared by the file, else inferred "
                      "from the body's size), mm, cm, in or m.", flag_values=fv)
    flags.DEFINE_enum("motion_up_axis", d.motion_up_axis, list(motion_io.UP_AXES),
                      "Vertical axis of the motion files: auto (BVH/ASF y, C3D/npz z), y or z.",
                      flag_values=fv)
    flags.DEFINE_enum("look_variation", d.look_variation, list(LOOK_VARIATIONS),
                      "subject: one outfit per person; take: a new outfit per take, with the "
                      "left/right cues (strap, watch, stripe) on sides drawn per take.",
                      flag_values=fv)
    flags.DEFINE_enum("lighting", d.lighting, list(clutter_lib.LIGHTING),
                      "Clutter: constant; drift (brightness and colour drift 20-35% over the "
                      "take); switch (a light switches mid-take).", flag_values=fv)
    flags.mark_flag_as_required("output_dir", flag_values=fv)


if __name__ == "__main__":
    from tfrecords_tools.runtime import cli
    define_flags()
    cli.run(main)
