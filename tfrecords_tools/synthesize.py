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
import multiprocessing
import os
import re
import time
import zlib
from typing import Callable, Iterator, Optional, Sequence

import cv2
import numpy as np

from tfrecords_tools import cameras as cameras_lib
from tfrecords_tools import dataset_io, motion_filter, schema
from tfrecords_tools.synth import body as body_lib
from tfrecords_tools.synth import motion as motion_lib
from tfrecords_tools.synth import render, scene

WRITER = "tfrecords_tools.synthesize"
FPS = motion_lib.FPS
# Plausible human size (mm) measured along the foot-to-head chain of bones; a motion file
# outside it is in other units (metres, cm) or not a human skeleton.
_CHAIN = ((3, 2), (2, 1), (1, 0), (0, 7), (7, 8), (8, 9), (9, 10))
BODY_CHAIN_RANGE_MM = (900.0, 2600.0)


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
      motion_file: optional .npz with world joints [T, 17, 3] in mm (key ``joints3d_world``
        or its only array), rendered for every subject instead of the procedural actions,
        under the action name of the file stem.
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


def _rig(config: SynthConfig) -> list:
    return list(config.cameras) if config.cameras is not None else cameras_lib.h36m_rig()


LOOK_VARIATIONS = ("subject", "take")


def subject_actions(config: SynthConfig, subject: str) -> tuple:
    """The actions ``subject`` performs in a dataset of ``config``.

    Human3.6M-named subjects perform ``actions``; the test subjects also the held-out
    ``unseen_actions``; extra people U01... a per-person draw from ``extra_actions``.
    """
    if config.motion_file is not None:
        return (motion_action_name(config.motion_file),)
    if body_lib.is_extra_subject(subject):
        pool = tuple(config.extra_actions) or tuple(config.actions)
        k = config.extra_actions_per_subject
        if not 0 < k < len(pool):
            return pool
        rng = take_rng(config, subject, "", 0, "actions")
        pick = np.sort(rng.choice(len(pool), size=k, replace=False))
        return tuple(pool[i] for i in pick)
    unseen = tuple(config.unseen_actions) if subject in body_lib.TEST_SUBJECTS else ()
    return tuple(config.actions) + unseen


# ----------------------------------------------------------------------------- validation

def load_motion_file(path: str) -> np.ndarray:
    """Loads and checks a motion file: world joints [T, 17, 3] in mm.

    Raises:
      ValueError: naming the file and what is wrong (shape, NaN, units).
    """
    if not os.path.exists(path):
        raise ValueError(f"--motion_file {path} does not exist")
    try:
        with np.load(path) as data:
            keys = list(data.keys())
            arrays = {k: data[k] for k in keys if k == "joints3d_world" or len(keys) == 1}
    except (OSError, zlib.error, EOFError, ValueError, AttributeError, TypeError) as e:
        # np.load reads other bytes as a pickle ("Cannot load file containing pickled
        # data") or a bare .npy array (no .keys()): neither names the file.
        raise ValueError(f"motion file {path} is not a readable .npz archive "
                         f"({type(e).__name__}: {e}); expected numpy.savez output with "
                         f"'joints3d_world' [T, 17, 3] in mm") from e
    if not arrays:
        raise ValueError(f"motion file {path} holds arrays {keys}; expected one named "
                         f"'joints3d_world' (or a single array) of shape [T, 17, 3]")
    joints = arrays.get("joints3d_world", next(iter(arrays.values())))
    joints = np.asarray(joints)
    if joints.ndim != 3 or joints.shape[1:] != (schema.NUM_JOINTS, 3) or joints.shape[0] < 2:
        raise ValueError(f"motion file {path}: joints have shape {joints.shape}, expected "
                         f"[T >= 2, {schema.NUM_JOINTS}, 3] (world mm, Human3.6M 17-joint order)")
    if not np.issubdtype(joints.dtype, np.number):
        raise ValueError(f"motion file {path}: joints have dtype {joints.dtype}, expected floats")
    bad = ~np.isfinite(joints).all(axis=(1, 2))
    if bad.any():
        raise ValueError(f"motion file {path}: NaN or inf in frames {np.flatnonzero(bad)[:10].tolist()}")
    joints = joints.astype(np.float64)
    chain = float(np.median(sum(np.linalg.norm(joints[:, a] - joints[:, b], axis=-1)
                                for a, b in _CHAIN)))
    lo, hi = BODY_CHAIN_RANGE_MM
    if not lo <= chain <= hi:
        hint = (" — looks like metres; multiply by 1000" if lo / 1000 <= chain <= hi / 1000 else
                " — looks like centimetres; multiply by 10" if lo / 10 <= chain <= hi / 10 else "")
        raise ValueError(f"motion file {path}: foot-to-head bone chain is {chain:.3g} units, "
                         f"expected a human in millimetres ({lo:.0f}-{hi:.0f}){hint}")
    return joints


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
    if config.motion_file is None:
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
              ("jpeg_quality", 1 <= config.jpeg_quality <= 100, "in [1, 100]"))
    for name, ok, expected in checks:
        if not ok:
            raise ValueError(f"--{name} {getattr(config, name)} is invalid; expected {expected}")
    if config.motion_file is None:
        return None
    joints = load_motion_file(config.motion_file)
    for cam in _rig(config):
        z = cam.world_to_camera(joints)[..., 2]
        if z.min() < 300:
            t = int(np.argmin(z.min(1)))
            raise ValueError(f"motion file {config.motion_file}: frame {t} is behind or too close "
                             f"to camera {cam.camera_id} (depth {z.min():.0f} mm); expected the "
                             f"person inside the capture volume around the world origin")
    return joints


def motion_action_name(path: str) -> str:
    """Action name under which a motion file is stored (its file stem, sanitised)."""
    return re.sub(r"[^A-Za-z0-9]+", "", os.path.splitext(os.path.basename(path))[0]) or "Motion"


def settings_of(config: SynthConfig) -> dict:
    """JSON-able settings stored in the manifest (a motion file is identified by checksum)."""
    s = dataclasses.asdict(config)
    if config.motion_file is not None:
        s["motion_file_sha256"] = dataset_io.sha256_file(config.motion_file)
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
        key = (cam.camera_id, config.seed, cam.width, cam.height)
        if key not in _BACKGROUNDS:
            _BACKGROUNDS[key] = np.ascontiguousarray(
                scene.render_background(cam, config.seed)[..., ::-1])
        out.append(_BACKGROUNDS[key])
    return out


def take_rng(config: SynthConfig, subject: str, action: str, take: int, salt: str = ""
             ) -> np.random.Generator:
    """Deterministic generator for one take (independent of worker and order)."""
    return np.random.default_rng([config.seed & 0xFFFFFFFF, zlib.crc32(subject.encode()),
                                  zlib.crc32(action.encode()), take, zlib.crc32(salt.encode())])


def take_motion(config: SynthConfig, subject: body_lib.Subject, action: str, take: int
                ) -> np.ndarray:
    """World joints [T, 17, 3] of one take (procedural or from the motion file)."""
    if config.motion_file is not None:
        return load_motion_file(config.motion_file)
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
    intrinsics = np.stack([c.intrinsics for c in rig])
    distortion = np.stack([c.distortion for c in rig])
    rotation = np.stack([c.rotation for c in rig])
    translation = np.stack([c.translation for c in rig])
    image_wh = np.array([[c.width, c.height] for c in rig])
    for ci, start in enumerate(range(0, len(keep), config.clip_length)):
        idx = keep[start:start + config.clip_length]
        box = boxes[start:start + config.clip_length]
        encoded = [[b""] * len(rig) for _ in idx]
        for t, v, img in render.iter_render(joints[idx], rig, subject, box, config.image_size, bgs):
            encoded[t][v] = encode_jpeg(img, config.jpeg_quality)
        yield schema.Clip(
            subject=subject_name, action=action, sequence_id=f"{subject_name}/{action} {take + 1}",
            fps=FPS, clip_index=ci, frame_index=idx.astype(np.int64),
            camera_ids=[c.camera_id for c in rig], intrinsics=intrinsics, distortion=distortion,
            rotation=rotation, translation=translation, image_wh=image_wh,
            image_size=config.image_size, has_background=config.background, images=encoded,
            crop_boxes=box, joints3d_world=joints[idx] if config.labels else None)


def _produce(payload: _Payload) -> Iterator[schema.Clip]:
    """dataset_io producer: all takes of one (subject, action)."""
    if multiprocessing.parent_process() is not None:
        cv2.setNumThreads(1)  # one worker per core already: OpenCV threads would oversubscribe
    cfg = payload.config
    takes = 1 if cfg.motion_file is not None else cfg.takes
    for take in range(takes):
        yield from take_clips(cfg, payload.subject, payload.action, take)


def shard_name(subject: str, action: str) -> str:
    return f"{subject}-{action}"


def generate(output_dir: str, config: SynthConfig, num_workers: int = 1,
             log: Callable[[str], None] = print) -> dict:
    """Writes (or resumes writing) a synthetic dataset; returns its manifest.

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
        num_workers=num_workers, log=log)
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
        unseen_actions=tuple(f.unseen_actions))


def main(argv: Sequence[str]) -> None:
    from absl import flags
    from tfrecords_tools import cli
    cli.check_no_arguments(argv)
    f = flags.FLAGS
    # Errors (a bad flag or file) end as one line: see tfrecords_tools.cli.
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
            ("string", "motion_file", None, "Optional .npz of world joints [T, 17, 3] in mm."),
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
            ("integer", "num_workers", 1, "Parallel writer processes.")):
        getattr(flags, f"DEFINE_{kind}")(name, default, text, flag_values=fv)
    flags.DEFINE_enum("look_variation", d.look_variation, list(LOOK_VARIATIONS),
                      "subject: one outfit per person; take: a new outfit per take, with the "
                      "left/right cues (strap, watch, stripe) on sides drawn per take.",
                      flag_values=fv)
    flags.mark_flag_as_required("output_dir", flag_values=fv)


if __name__ == "__main__":
    from tfrecords_tools import cli
    define_flags()
    cli.run(main)
