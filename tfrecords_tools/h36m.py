"""Human3.6M download -> tf_synchro TFRecords.

    python -m tfrecords_tools.h36m --h36m_root /data/h36m --output_dir /data/h36m_tfr

Reads the official layout (docs/DESIGN.md §2)::

    <h36m_root>/S1/Videos/<Action>[ <n>].<camera>.mp4
    <h36m_root>/S1/MyPoseFeatures/D3_Positions/<Action>[ <n>].cdf   (variable "Pose", [1, T, 96])

and writes one shard per sequence (subject, action, take): clips of up to
``clip_length`` kept 50 fps frames, all cameras, person-centred square crops around
the projected 3D joints, the 17-joint world pose and each camera's calibration
(:mod:`tfrecords_tools.h36m_calibration`, per subject). Frames without significant
3D motion are dropped, keeping original frame indices.

Known quirks of the download handled here:
  * action names differ between subjects (S1: ``TakingPhoto``, ``WalkingDog``; others:
    ``Photo``, ``WalkDog``) and takes are told apart by trailing numbers
    (``Directions``, ``Directions 1``): names are canonicalised, takes kept in the id;
  * ``S11/Videos/Directions.54138969.mp4`` is corrupt: that view is skipped;
  * S9 ``Greeting``, ``SittingDown 1`` and ``Waiting 1`` (called Greeting-2,
    SittingDown-2 and Waiting-1 in the subaction numbering) have shifted ground
    truth: skipped unless ``include_damaged``;
  * videos and poses of one take may differ in length by a few frames: all are
    truncated to the shortest, with a warning and a manifest entry giving the counts.
Anything else unusable (a missing or unreadable video, a CDF with another variable
or shape) is skipped with a reason listed in the manifest; a wrong root is an error.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from tfrecords_tools import (cameras, crops, dataset_io, h36m_calibration, motion_filter, schema,
                             skeleton, video)
from tfrecords_tools.runtime import cli, locks
from tfrecords_tools.runtime import flags as flag_engine
from tfrecords_tools.runtime.flags import setting

log = logging.getLogger(__name__)

WRITER = "tfrecords_tools.h36m"
FPS = 50.0
ALL_SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
CAMERA_IDS = h36m_calibration.CAMERA_IDS

# Canonical action names (as the evaluation reports them) and the variants found in files.
ACTIONS = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Posing", "Purchases",
           "Sitting", "SittingDown", "Smoking", "TakingPhoto", "Waiting", "Walking",
           "WalkingDog", "WalkTogether")
ACTION_VARIANTS = {"Photo": "TakingPhoto", "WalkDog": "WalkingDog",
                   "WalkingTogether": "WalkTogether"}

# (subject, canonical action, take) of known-bad data. Take "" is the file without a number.
CORRUPT_VIDEOS = {("S11", "Directions", "", "54138969")}
# File-stem mapping from the subaction numbering follows public visual checks of the
# 2D ground truth (S9 "Greeting", "SittingDown 1", "Waiting 1" are the shifted ones).
DAMAGED_SEQUENCES = {("S9", "Greeting", ""), ("S9", "SittingDown", "1"), ("S9", "Waiting", "1")}

_STEM = re.compile(r"^(?P<action>[A-Za-z]+?)(?:[ _-]?(?P<take>\d+))?$")
_SUBJECT_DIR = re.compile(r"^S\d+$")
POSE_VARIABLE = "Pose"
RAW_JOINTS = 32


class H36MError(ValueError):
    """The input is not a usable Human3.6M tree, or a converter argument is wrong."""


# ---------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class H36MConfig:
    """Settings of one conversion (the binary's flags; stored in the dataset manifest).

    Attributes:
      h36m_root: folder holding ``S1/``, ``S5/``, ...
      subjects: subjects to convert.
      actions: canonical action names to convert (variants accepted); None for all.
      cameras: camera ids, in the order views are stored.
      frame_step: keep every n-th frame before motion filtering (frame indices stay 50 fps).
      image_size: side of the stored square crops (pixels).
      clip_length: kept timesteps per record.
      margin: crop margin around the projected joints, fraction of the joints' extent.
      background: "keep" or "remove" (median background + foreground mask).
      motion_threshold_mm: a frame is kept if a root-relative joint moved more than this
        since the last kept frame; 0 keeps all.
      include_damaged: also convert the S9 sequences with shifted ground truth.
      jpeg_quality: JPEG quality of the crops.
      mask_threshold: grey-level difference to the median background that counts as person.
      background_samples: frames sampled for each median background.
      min_views: sequences with fewer usable cameras are skipped (pairs need two views).
    """

    h36m_root: str = setting(None, "Folder holding S1/, S5/, ... of the download.",
                             required=True, path=True)
    subjects: tuple = setting(ALL_SUBJECTS, "Subjects to convert.")
    actions: Optional[tuple] = setting(None, "Actions to convert (canonical or variant names); "
                                       "empty for all.")
    cameras: tuple = setting(CAMERA_IDS, "Camera ids, in stored view order.",
                             choices=CAMERA_IDS)
    frame_step: int = setting(1, "Keep every n-th frame before motion filtering; frame indices "
                              "stay in 50 fps frames.", minimum=1)
    image_size: int = setting(160, "Side of the stored square crops (pixels).",
                              minimum=schema.MIN_IMAGE_SIZE, maximum=schema.MAX_IMAGE_SIZE)
    clip_length: int = setting(256, "Kept timesteps per record.",
                               minimum=schema.MIN_CLIP_LENGTH, reason=schema.MIN_CLIP_REASON)
    margin: float = setting(0.2, "Crop margin around the projected joints.", minimum=0)
    background: str = setting("keep", "Keep the scene, or remove it (median background + "
                              "foreground mask).", choices=("keep", "remove"))
    motion_threshold_mm: float = setting(5.0, "Drop frames where no root-relative joint moved "
                                         "more than this; 0 keeps all.", minimum=0)
    include_damaged: bool = setting(False, "Also convert S9 Greeting, SittingDown 1, Waiting 1 "
                                    "(shifted ground truth).")
    jpeg_quality: int = setting(90, "JPEG quality of the crops.", minimum=1, maximum=100)
    mask_threshold: float = setting(30.0, "Grey-level difference to the median background that "
                                    "counts as person (--background=remove).", minimum=0,
                                    maximum=255)
    background_samples: int = setting(40, flag=False, minimum=1)
    min_views: int = setting(2, flag=False, minimum=1)

    def __post_init__(self):
        """Declared ranges first, then the relations between settings."""
        try:
            flag_engine.check_ranges(self)
        except ValueError as e:
            raise H36MError(str(e)) from None
        checks = [
            (len(self.cameras) > 0 and len(set(self.cameras)) == len(self.cameras), "cameras",
             "a non-empty list without repeats"),
            (self.min_views <= len(self.cameras), "min_views", "in [1, number of cameras]"),
            (len(self.subjects) > 0, "subjects", "non-empty"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise H36MError(f"--{name}={getattr(self, name)!r}: expected {expected}")
        if self.actions is not None:
            unknown = [a for a in self.actions if canonical_action(a) not in ACTIONS]
            if unknown:
                raise H36MError(f"actions {unknown} are not Human3.6M actions; expected names "
                                f"among {list(ACTIONS)} (or variants {list(ACTION_VARIANTS)})")

    def settings(self) -> dict:
        """JSON-able settings stored in (and compared against) the dataset."""
        out = dataclasses.asdict(self)
        out["h36m_root"] = os.path.abspath(self.h36m_root)
        out["actions"] = None if self.actions is None else sorted(
            canonical_action(a) for a in self.actions)
        return out


# ---------------------------------------------------------------------------- names


def canonical_action(name: str) -> str:
    """``Photo`` -> ``TakingPhoto``, ``WalkDog 1`` -> ``WalkingDog``: one name per action."""
    parsed = _STEM.match(name.strip())
    base = parsed.group("action") if parsed else name.strip()
    return ACTION_VARIANTS.get(base, base)


def parse_stem(stem: str) -> tuple[str, str]:
    """File stem (``"WalkDog 1"``) -> (canonical action, take) = (``"WalkingDog"``, ``"1"``).

    Raises:
      H36MError: the stem is not ``<Action>[ <number>]``.
    """
    m = _STEM.match(stem.strip())
    if not m:
        raise H36MError(f"{stem!r} is not a Human3.6M sequence name (<Action>[ <number>])")
    return canonical_action(m.group("action")), m.group("take") or ""


def _parse_video_name(name: str) -> Optional[tuple[str, str, str]]:
    """``"Walking 1.54138969.mp4"`` -> (canonical action, take, camera), or None."""
    base, ext = os.path.splitext(name)
    if ext.lower() != ".mp4" or "." not in base:
        return None
    stem, camera = base.rsplit(".", 1)
    try:
        action, take = parse_stem(stem)
    except H36MError:
        return None
    return action, take, camera


# ---------------------------------------------------------------------------- poses


def load_poses(cdf_path: str) -> np.ndarray:
    """World joints [T, 17, 3] (mm) from a ``D3_Positions`` CDF file.

    Raises:
      H36MError: unreadable file, no ``Pose`` variable, or a shape other than
        [1, T, 96] / [T, 96].
    """
    import cdflib  # Imported here: only the Human3.6M path needs it.
    try:
        cdf = cdflib.CDF(cdf_path)
        names = list(cdf.cdf_info().zVariables) + list(cdf.cdf_info().rVariables)
    except Exception as e:  # cdflib raises a variety of errors for non-CDF input.
        raise H36MError(f"{cdf_path}: not a readable CDF file ({type(e).__name__}: {e})") from e
    if POSE_VARIABLE not in names:
        raise H36MError(f"{cdf_path}: no variable {POSE_VARIABLE!r} (found {names}); expected "
                        f"the official D3_Positions layout")
    pose = np.asarray(cdf.varget(POSE_VARIABLE), np.float64)
    if pose.ndim == 3 and pose.shape[0] == 1:
        pose = pose[0]
    if pose.ndim != 2 or pose.shape[1] != RAW_JOINTS * 3 or pose.shape[0] < 1:
        raise H36MError(f"{cdf_path}: variable {POSE_VARIABLE!r} has shape "
                        f"{list(np.shape(cdf.varget(POSE_VARIABLE)))}, expected [1, T, "
                        f"{RAW_JOINTS * 3}] (32 joints x 3 per frame)")
    if not np.all(np.isfinite(pose)):
        raise H36MError(f"{cdf_path}: variable {POSE_VARIABLE!r} contains NaN or inf")
    return pose.reshape(-1, RAW_JOINTS, 3)[:, skeleton.H36M_32_TO_17]


# ---------------------------------------------------------------------------- discovery


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
    """One take to convert: its CDF and the video of each usable camera."""

    subject: str
    stem: str                 # CDF file stem, e.g. "Directions 1"
    action: str               # canonical action
    cdf_path: str
    videos: tuple             # ((camera_id, path), ...) in config camera order

    @property
    def sequence_id(self) -> str:
        return f"{self.subject}/{self.stem}"

    @property
    def shard_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", f"{self.subject}_{self.stem}").strip("_")


def discover(config: H36MConfig) -> tuple[list[SequenceSpec], list[dataset_io.Skipped]]:
    """Sequences to convert and the items skipped while listing them.

    Raises:
      H36MError: the root does not exist or holds no convertible sequence.
    """
    root = config.h36m_root
    if not os.path.isdir(root):
        raise H36MError(f"--h36m_root {root} {locks.not_a_directory(root, 'is not a directory')}")
    found_subjects = sorted(n for n in os.listdir(root) if _SUBJECT_DIR.match(n)
                            and os.path.isdir(os.path.join(root, n)))
    if not found_subjects:
        raise H36MError(f"{root} holds no subject folders (S1, S5, ...); expected the official "
                        f"layout <root>/S1/Videos/*.mp4 and <root>/S1/MyPoseFeatures/"
                        f"D3_Positions/*.cdf")
    wanted_actions = None if config.actions is None else {canonical_action(a)
                                                          for a in config.actions}
    specs, skipped = [], []
    for subject in config.subjects:
        if subject not in found_subjects:
            skipped.append(dataset_io.Skipped(subject, f"no folder {os.path.join(root, subject)} "
                                                       f"(found {found_subjects})"))
            continue
        s_specs, s_skipped = _discover_subject(config, subject, wanted_actions)
        specs += s_specs
        skipped += s_skipped
    if not specs:
        reasons = "; ".join(f"{s.item}: {s.reason}" for s in skipped[:10])
        raise H36MError(f"{root}: nothing to convert for subjects {list(config.subjects)}"
                        f"{' and actions ' + str(sorted(wanted_actions)) if wanted_actions else ''}"
                        f" ({reasons or 'no sequences found'})")
    return specs, skipped


def _discover_subject(config: H36MConfig, subject: str, wanted_actions):
    sdir = os.path.join(config.h36m_root, subject)
    pose_dir = os.path.join(sdir, "MyPoseFeatures", "D3_Positions")
    video_dir = os.path.join(sdir, "Videos")
    missing = [d for d in (pose_dir, video_dir) if not os.path.isdir(d)]
    if missing:
        return [], [dataset_io.Skipped(subject, f"not in the Human3.6M layout: missing {missing}")]
    if subject not in h36m_calibration.EXTRINSICS:
        return [], [dataset_io.Skipped(subject, f"no released calibration for {subject} "
                                                f"(known: {list(h36m_calibration.SUBJECTS)})")]
    videos = {}  # (action, take) -> {camera: path}
    for name in sorted(os.listdir(video_dir)):
        parsed = _parse_video_name(name)
        if parsed:
            videos.setdefault(parsed[:2], {})[parsed[2]] = os.path.join(video_dir, name)
    specs, skipped, used = [], [], set()
    for name in sorted(os.listdir(pose_dir)):
        stem, ext = os.path.splitext(name)
        if ext.lower() != ".cdf":
            continue
        item = f"{subject}/{stem}"
        try:
            action, take = parse_stem(stem)
        except H36MError as e:
            skipped.append(dataset_io.Skipped(item, str(e)))
            continue
        used.add((action, take))
        if wanted_actions is not None and action not in wanted_actions:
            continue
        if (subject, action, take) in DAMAGED_SEQUENCES and not config.include_damaged:
            skipped.append(dataset_io.Skipped(item, "known damaged Human3.6M sequence (shifted "
                                                    "ground truth); pass --include_damaged to "
                                                    "convert it"))
            continue
        cdf_path = os.path.join(pose_dir, name)
        try:
            load_poses(cdf_path)
        except H36MError as e:
            skipped.append(dataset_io.Skipped(item, str(e)))
            continue
        views = []
        for cam in config.cameras:
            path = videos.get((action, take), {}).get(cam)
            if (subject, action, take, cam) in CORRUPT_VIDEOS:
                skipped.append(dataset_io.Skipped(f"{item}.{cam}", "known corrupt Human3.6M "
                                                                   "video; view skipped"))
            elif path is None:
                skipped.append(dataset_io.Skipped(
                    f"{item}.{cam}", f"video missing: expected {video_dir}/{stem}.{cam}.mp4 "
                                     f"(or a name variant of {action})"))
            else:
                views.append((cam, path))
        if len(views) < config.min_views:
            skipped.append(dataset_io.Skipped(item, f"only {len(views)} usable camera(s), "
                                                    f"{config.min_views} needed"))
            continue
        specs.append(SequenceSpec(subject, stem, action, cdf_path, tuple(views)))
    for key in sorted(set(videos) - used):
        if wanted_actions is None or key[0] in wanted_actions:
            skipped.append(dataset_io.Skipped(f"{subject}/{key[0]} {key[1]}".strip(),
                                              "videos without a D3_Positions CDF (no labels)"))
    return specs, skipped


# ---------------------------------------------------------------------------- producer


def _view_camera(subject: str, camera_id: str, info: video.VideoInfo) -> cameras.Camera:
    cam = h36m_calibration.camera(subject, camera_id)
    if (info.width, info.height) != (cam.width, cam.height):
        log.warning("%s: video is %dx%d, calibration is for %dx%d; scaling the intrinsics",
                    info.path, info.width, info.height, cam.width, cam.height)
        cam = h36m_calibration.scale_camera(cam, info.width, info.height)
    return cam


def produce_sequence(task: tuple[H36MConfig, SequenceSpec]
                     ) -> Iterator[Union[schema.Clip, dataset_io.Skipped]]:
    """Clips (and skip notes) of one sequence; the shard producer of :func:`convert`."""
    config, spec = task
    joints = load_poses(spec.cdf_path)
    views, cams, infos = [], [], []
    for cam_id, path in spec.videos:
        try:
            info = video.probe(path)
        except video.VideoError as e:
            log.warning("%s", e)
            yield dataset_io.Skipped(f"{spec.sequence_id}.{cam_id}", str(e))
            continue
        if info.fps and abs(info.fps - FPS) > 0.5:
            log.warning("%s reports %.2f fps; Human3.6M poses are %g fps and are matched to "
                        "video frames by index", path, info.fps, FPS)
        views.append((cam_id, path))
        infos.append(info)
        cams.append(_view_camera(spec.subject, cam_id, info))
    if len(views) < config.min_views:
        yield dataset_io.Skipped(spec.sequence_id, f"only {len(views)} readable camera(s), "
                                                   f"{config.min_views} needed")
        return
    counts = {"poses": len(joints), **{c: i.num_frames for (c, _), i in zip(views, infos)}}
    n = min(counts.values())
    if len(set(counts.values())) > 1:
        msg = f"frame counts differ ({counts}); truncated to the shortest, {n} frames"
        log.warning("%s: %s", spec.sequence_id, msg)
        yield dataset_io.Skipped(f"{spec.sequence_id} frames {n}..{max(counts.values()) - 1}", msg)

    candidates = np.arange(0, n, config.frame_step)
    kept = candidates[motion_filter.moving_frames_3d(joints[candidates],
                                                     config.motion_threshold_mm)]
    # Boxes from the projected ground truth: [K, V, 4] in each video's pixels.
    boxes = np.stack([[crops.square_box(cam.project(joints[t]), config.margin) for cam in cams]
                      for t in kept]) if len(kept) else np.zeros((0, len(cams), 4))
    backgrounds = None
    if config.background == "remove":
        backgrounds = [video.median_background(path, n, config.background_samples,
                                               exclude_boxes=_body_boxes(cam, joints[:n]))
                       for (_, path), cam in zip(views, cams)]
    yield from _clips(config, spec, views, cams, kept, joints, boxes, backgrounds)


def _body_boxes(cam: cameras.Camera, joints: np.ndarray, pad: float = 0.15) -> np.ndarray:
    """Boxes [T, 4] around the projected joints, padded by ``pad`` of the body's larger
    extent on each side: generous enough to cover the flesh around the joints, which
    the background estimate must not see."""
    uv = cam.project(joints)
    lo, hi = uv.min(1), uv.max(1)
    extra = pad * (hi - lo).max(1, keepdims=True)
    return np.concatenate([lo - extra, hi + extra], -1)


def _clips(config, spec, views, cams, kept, joints, boxes, backgrounds):
    frame_indices = np.repeat(kept[:, None], len(views), axis=1)
    timesteps = video.crop_timesteps(
        [path for _, path in views], frame_indices, boxes, config.image_size,
        backgrounds=backgrounds, quality=config.jpeg_quality,
        mask_threshold=config.mask_threshold)
    end = 0
    try:
        for clip_index, (start, images) in enumerate(video.clip_chunks(timesteps,
                                                                       config.clip_length)):
            end = start + len(images)
            yield _clip(config, spec, cams, clip_index, kept[start:end], images, joints,
                        boxes[start:end])
    except video.VideoError as e:
        # The container promised more frames than it holds: keep what was read.
        log.warning("%s", e)
        yield dataset_io.Skipped(f"{spec.sequence_id} frames {int(kept[end])}..",
                                 f"video ended early ({e}); sequence truncated")


def _clip(config, spec, cams, clip_index, idx, images, joints, boxes) -> schema.Clip:
    return schema.Clip(
        subject=spec.subject, action=spec.action, sequence_id=spec.sequence_id, fps=FPS,
        clip_index=clip_index, frame_index=np.asarray(idx, np.int64),
        camera_ids=[c.camera_id for c in cams],
        intrinsics=np.stack([c.intrinsics for c in cams]),
        distortion=np.stack([c.distortion for c in cams]),
        rotation=np.stack([c.rotation for c in cams]),
        translation=np.stack([c.translation for c in cams]),
        image_wh=np.array([[c.width, c.height] for c in cams], np.int64),
        image_size=config.image_size, has_background=config.background == "keep",
        images=images, crop_boxes=np.asarray(boxes, np.float64),
        joints3d_world=joints[np.asarray(idx)])


# ---------------------------------------------------------------------------- driver


def convert(config: H36MConfig, output_dir: str, log_fn=print, **options) -> dict:
    """Converts (or resumes converting) a Human3.6M tree; returns the manifest.

    Raises:
      H36MError: the root is not in the expected layout or nothing is convertible.
      dataset_io.DatasetError: ``output_dir`` holds a dataset with other settings.
    """
    return dataset_io.write_sequences(output_dir, WRITER, config, discover, produce_sequence,
                                      log_fn=log_fn, **options)


@dataclasses.dataclass(frozen=True)
class H36MRun(dataset_io.ConversionRun):
    """One Human3.6M invocation: where to write, how many processes, and the conversion's
    settings (an empty ``--actions`` list: all)."""

    NESTED, ALL_IF_EMPTY = "dataset", "actions"
    dataset: H36MConfig = setting(factory=H36MConfig)


def main(argv: Sequence[str]) -> None:
    cli.check_no_arguments(argv)
    dataset_io.convert_from_flags(H36MRun, convert, WRITER)


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`H36MRun`."""
    flag_engine.define_flags(H36MRun, flag_values, binary=WRITER)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
