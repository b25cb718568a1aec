"""Any synchronized multi-camera rig -> tf_synchro TFRecords (no labels: pretraining).

    python -m tfrecords_tools.rig --input_dir /data/my_rig --output_dir /data/my_rig_tfr

Folder format (one folder per sequence, one video per camera; names are free)::

    my_rig/
      calibration.json          optional, shared by every sequence (see load_calibration)
      dance_01/
        cam_left.mp4            camera id = file stem
        cam_right.mp4
        cam_back.mp4
        calibration.json        optional, overrides the shared one for this sequence
        sequence.json           optional: {"subject": "P1", "action": "Dance",
                                           "frame_offsets": {"cam_right": 5},
                                           "crop_boxes": {"cam_left": [x0, y0, x1, y1]}}
      walk_02/
        a.mp4
        b.avi

``frame_offsets``: video frame ``t + offset`` of a camera shows the same instant as
frame ``t`` of a camera with offset 0 (cameras started recording ``offset`` frames
early). Stored ``clip/frame_index`` values are in this common timeline.

The person is found by background subtraction (no detector weights): a per-camera,
per-sequence median background, refined by ignoring where the person was found in a
first pass; per-frame foreground boxes are filled and smoothed over time. With
``crop="fixed"`` the crop box of each camera is fixed instead (``crop_boxes`` of
``sequence.json``, or the largest centred square). Frames without significant motion
(image difference inside the person crops, all views) are dropped, keeping indices.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from typing import Iterator, Optional, Sequence, Union

import cv2
import numpy as np

from tfrecords_tools import (cameras, cli, crops, dataset_io, h36m_calibration, motion_filter,
                             run_lock, schema, video)

log = logging.getLogger(__name__)

WRITER = "tfrecords_tools.rig"
CALIBRATION = "calibration.json"
SEQUENCE_INFO = "sequence.json"
_MOTION_CROP = 32  # side of the grey person crops compared by the motion filter


class RigError(ValueError):
    """The input folder, a metadata file or a converter argument is not usable."""


@dataclasses.dataclass(frozen=True)
class RigConfig:
    """Settings of one rig conversion (the binary's flags; stored in the manifest).

    Attributes:
      input_dir: folder of sequence folders.
      subject: subject name for sequences without ``sequence.json`` "subject".
      sequences: folder names to convert; None for all.
      fps: frame rate to record; None takes the videos'.
      frame_step: keep every n-th frame before motion filtering.
      image_size: side of the stored square crops.
      clip_length: kept timesteps per record.
      crop: "mask" (person box from the foreground mask) or "fixed" (one box per camera).
      margin: crop margin around the foreground box, fraction of its side.
      background: "keep" or "remove".
      motion_threshold: mean absolute grey-level change inside the person crops (all
        views) since the last kept frame needed to keep a frame; 0 keeps all.
      mask_threshold: grey-level difference to the background that counts as person.
      background_samples: frames sampled for each median background.
      analysis_size: frames are shrunk to at most this side for the masks (speed).
      box_smoothing: frames in the moving average of the crop boxes.
      jpeg_quality: JPEG quality of the crops.
      min_views: sequences with fewer usable cameras are skipped.
    """

    input_dir: str
    subject: str = "rig"
    sequences: Optional[tuple] = None
    fps: Optional[float] = None
    frame_step: int = 1
    image_size: int = 160
    clip_length: int = 256
    crop: str = "mask"
    margin: float = 0.2
    background: str = "keep"
    motion_threshold: float = 2.0
    mask_threshold: float = 30.0
    background_samples: int = 40
    analysis_size: int = 320
    box_smoothing: int = 5
    jpeg_quality: int = 90
    min_views: int = 2

    def __post_init__(self):
        checks = [
            (self.frame_step >= 1, "frame_step", ">= 1"),
            (schema.MIN_IMAGE_SIZE <= self.image_size <= schema.MAX_IMAGE_SIZE, "image_size",
             f"in [{schema.MIN_IMAGE_SIZE}, {schema.MAX_IMAGE_SIZE}]"),
            (self.clip_length >= schema.MIN_CLIP_LENGTH, "clip_length",
             f">= {schema.MIN_CLIP_LENGTH} (room for an unsynchronized pair)"),
            (self.crop in ("mask", "fixed"), "crop", "'mask' or 'fixed'"),
            (self.background in ("keep", "remove"), "background", "'keep' or 'remove'"),
            (self.margin >= 0, "margin", ">= 0"),
            (self.fps is None or self.fps > 0, "fps", "> 0"),
            (self.analysis_size >= 32, "analysis_size", ">= 32"),
            (self.min_views >= 1, "min_views", ">= 1"),
            (bool(self.subject), "subject", "a non-empty name"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise RigError(f"--{name}={getattr(self, name)!r}: expected {expected}")

    def settings(self) -> dict:
        out = dataclasses.asdict(self)
        out["input_dir"] = os.path.abspath(self.input_dir)
        return out


# ---------------------------------------------------------------------------- metadata


def _camera_from_json(name: str, d: dict, where: str) -> cameras.Camera:
    def num(key, default=None):
        v = d.get(key, default)
        if v is None:
            raise RigError(f"{where}: camera {name!r} lacks {key!r}")
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise RigError(f"{where}: camera {name!r} {key}={v!r} is not a number") from None
        if not np.isfinite(v):
            raise RigError(f"{where}: camera {name!r} {key}={v!r} is not finite")
        return v

    def array(key, shape):
        try:
            a = np.asarray(d[key], np.float64)
        except (TypeError, ValueError):
            raise RigError(f"{where}: camera {name!r} {key!r} is not numeric") from None
        if a.shape != shape or not np.all(np.isfinite(a)):
            raise RigError(f"{where}: camera {name!r} {key!r} has shape {list(a.shape)}, "
                           f"expected {list(shape)} finite numbers")
        return a

    if not isinstance(d, dict):
        raise RigError(f"{where}: camera {name!r} must be an object, got {type(d).__name__}")
    fx, fy, cx, cy = num("fx"), num("fy"), num("cx"), num("cy")
    width, height = int(num("width")), int(num("height"))
    if fx <= 0 or fy <= 0 or width <= 0 or height <= 0:
        raise RigError(f"{where}: camera {name!r} needs positive fx, fy, width, height")
    distortion = array("distortion", (5,)) if "distortion" in d else np.zeros(5)
    if "rotation" in d or "translation" in d:
        rotation, translation = array("rotation", (3, 3)), array("translation", (3,))
        if (np.abs(rotation @ rotation.T - np.eye(3)).max() > 1e-3
                or abs(np.linalg.det(rotation) - 1) > 1e-3):
            raise RigError(f"{where}: camera {name!r} rotation is not a rotation matrix "
                           f"(expected orthonormal, det +1)")
        return cameras.Camera(name, fx, fy, cx, cy, width, height, rotation, translation,
                              distortion)
    if "q_cam_to_world" in d or "centre" in d:
        return cameras.Camera.from_quaternion_centre(
            name, (fx, fy, cx, cy, width, height), array("q_cam_to_world", (4,)),
            array("centre", (3,)), distortion)
    raise RigError(f"{where}: camera {name!r} needs extrinsics: 'rotation' (3x3, world->camera)"
                   f" and 'translation' (mm), or 'q_cam_to_world' (w, x, y, z) and 'centre' (mm)")


def load_calibration(path: str) -> dict[str, cameras.Camera]:
    """Cameras of a ``calibration.json``.

    Format::

        {"cameras": {"<camera id = video file stem>": {
            "fx": 1145.0, "fy": 1144.0, "cx": 512.5, "cy": 515.4,   # pixels
            "width": 1000, "height": 1002,                         # calibrated image size
            "rotation": [[...], [...], [...]],  "translation": [tx, ty, tz],
                # world -> camera, X_cam = R X + t, mm (or "q_cam_to_world" + "centre")
            "distortion": [k1, k2, p1, p2, k3]                     # optional, OpenCV
        }, ...}}

    Raises:
      RigError: unreadable JSON or a malformed camera (named with the field at fault).
    """
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise RigError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("cameras"), dict) \
            or not data["cameras"]:
        raise RigError(f"{path}: expected an object {{\"cameras\": {{\"<id>\": {{...}}}}}}")
    return {str(k): _camera_from_json(str(k), v, path) for k, v in data["cameras"].items()}


@dataclasses.dataclass(frozen=True)
class SequenceInfo:
    """Contents of an optional ``sequence.json``."""

    subject: Optional[str] = None
    action: Optional[str] = None
    frame_offsets: tuple = ()   # ((camera, offset), ...)
    crop_boxes: tuple = ()      # ((camera, (x0, y0, x1, y1)), ...)


def load_sequence_info(path: str) -> SequenceInfo:
    """Parses ``sequence.json`` (see the module docstring).

    Raises:
      RigError: unreadable, unknown keys, negative or non-integer offsets, bad boxes.
    """
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise RigError(f"{path}: not a readable JSON file ({e})") from e
    known = {"subject", "action", "frame_offsets", "crop_boxes"}
    if not isinstance(d, dict) or set(d) - known:
        raise RigError(f"{path}: expected an object with keys among {sorted(known)}, got "
                       f"{sorted(d) if isinstance(d, dict) else type(d).__name__}")
    for key in ("subject", "action"):
        value = d.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise RigError(f"{path}: {key!r} must be a non-empty string, got {value!r}")
    offsets = d.get("frame_offsets", {})
    if not isinstance(offsets, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in offsets.values()):
        raise RigError(f"{path}: frame_offsets must map camera ids to integers >= 0, "
                       f"got {offsets!r}")
    boxes = d.get("crop_boxes", {})
    for cam, box in (boxes.items() if isinstance(boxes, dict) else [(None, None)]):
        b = np.asarray(box, np.float64) if box is not None else np.zeros(0)
        if b.shape != (4,) or not (b[2] > b[0] and b[3] > b[1]):
            raise RigError(f"{path}: crop_boxes[{cam!r}] must be [x0, y0, x1, y1] with "
                           f"x1 > x0, y1 > y0, got {box!r}")
    return SequenceInfo(d.get("subject"), d.get("action"),
                        tuple(sorted(offsets.items())),
                        tuple(sorted((k, tuple(float(x) for x in v)) for k, v in boxes.items())))


# ---------------------------------------------------------------------------- discovery


@dataclasses.dataclass(frozen=True)
class RigSequence:
    """One sequence folder ready to convert."""

    name: str
    subject: str
    action: str
    videos: tuple                 # ((camera_id, path), ...) sorted by camera id
    calibration: Optional[tuple]  # ((camera_id, Camera), ...) or None
    info: SequenceInfo

    @property
    def sequence_id(self) -> str:
        return f"{self.subject}/{self.name}"

    @property
    def shard_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", f"{self.subject}_{self.name}").strip("_")


def discover(config: RigConfig) -> tuple[list[RigSequence], list[dataset_io.Skipped]]:
    """Sequence folders to convert and those skipped (with reasons).

    Raises:
      RigError: ``input_dir`` is missing, holds videos itself, or nothing is convertible.
    """
    root = config.input_dir
    if not os.path.isdir(root):
        raise RigError(f"--input_dir {root} {run_lock.not_a_directory(root, 'is not a directory')}")
    if video.find_videos(root):
        raise RigError(f"{root} holds videos directly; expected one sub-folder per sequence "
                       f"(<input_dir>/<sequence>/<camera>.mp4): point --input_dir one level up "
                       f"or move the videos into a sequence folder")
    shared = os.path.join(root, CALIBRATION)
    shared_calib, shared_error = None, None
    if os.path.exists(shared):
        try:
            shared_calib = load_calibration(shared)
        except RigError as e:
            shared_error = str(e)
    folders = sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n)))
    if config.sequences is not None:
        missing = sorted(set(config.sequences) - set(folders))
        if missing:
            raise RigError(f"{root}: no sequence folders {missing} (found {folders})")
        folders = [n for n in folders if n in config.sequences]
    specs, skipped = [], []
    for name in folders:
        try:
            spec = _sequence(config, name, shared_calib, shared_error)
        except (RigError, video.VideoError) as e:
            skipped.append(dataset_io.Skipped(name, str(e)))
            continue
        if spec is not None:
            specs.append(spec)
    by_shard: dict = {}
    for spec in specs:
        by_shard.setdefault(spec.shard_name, []).append(spec.name)
    clashes = {k: v for k, v in by_shard.items() if len(v) > 1}
    if clashes:
        shard, names = sorted(clashes.items())[0]
        raise RigError(f"{root}: sequence folders {names} would share the shard name "
                       f"{shard!r} (subject and folder name, letters and digits only); rename "
                       f"one of them")
    if not specs:
        reasons = "; ".join(f"{s.item}: {s.reason}" for s in skipped[:10])
        raise RigError(f"{root}: no convertible sequence folder (expected <input_dir>/"
                       f"<sequence>/<camera>.mp4 with >= {config.min_views} cameras)"
                       + (f": {reasons}" if reasons else ""))
    return specs, skipped


def _sequence(config, name, shared_calib, shared_error) -> Optional[RigSequence]:
    sdir = os.path.join(config.input_dir, name)
    videos = video.find_videos(sdir)
    if len(videos) < config.min_views:
        raise RigError(f"{len(videos)} video(s) in {sdir}, {config.min_views} needed "
                       f"(one video per camera)")
    info = SequenceInfo()
    if os.path.exists(os.path.join(sdir, SEQUENCE_INFO)):
        info = load_sequence_info(os.path.join(sdir, SEQUENCE_INFO))
    calib = shared_calib
    if os.path.exists(os.path.join(sdir, CALIBRATION)):
        calib = load_calibration(os.path.join(sdir, CALIBRATION))
    elif shared_error:
        raise RigError(shared_error)
    for what, names in (("frame_offsets", dict(info.frame_offsets)),
                        ("crop_boxes", dict(info.crop_boxes))):
        unknown = sorted(set(names) - set(videos))
        if unknown:
            raise RigError(f"{os.path.join(sdir, SEQUENCE_INFO)}: {what} names cameras "
                           f"{unknown} without a video (videos: {sorted(videos)})")
    if calib is not None:
        uncalibrated = sorted(set(videos) - set(calib))
        if uncalibrated:
            raise RigError(f"calibration does not match the cameras found: videos "
                           f"{uncalibrated} have no entry in the calibration (it has "
                           f"{sorted(calib)}; videos: {sorted(videos)})")
    return RigSequence(
        name=name, subject=info.subject or config.subject, action=info.action or name,
        videos=tuple(sorted(videos.items())),
        calibration=None if calib is None else tuple((c, calib[c]) for c in sorted(videos)),
        info=info)


# ---------------------------------------------------------------------------- producer


def _placeholder_camera(camera_id: str, width: int, height: int) -> cameras.Camera:
    """Stand-in geometry for an uncalibrated camera (records need some; pretraining
    ignores it): ~53 degree field of view, centred principal point, identity pose."""
    f = float(max(width, height))
    return cameras.Camera(camera_id, f, f, (width - 1) / 2, (height - 1) / 2, width, height,
                          np.eye(3), np.zeros(3))


def _fit_camera(cam: cameras.Camera, info: video.VideoInfo) -> cameras.Camera:
    if (cam.width, cam.height) == (info.width, info.height):
        return cam
    log.warning("%s: video is %dx%d, calibration is for %dx%d; scaling the intrinsics",
                info.path, info.width, info.height, cam.width, cam.height)
    return h36m_calibration.scale_camera(cam, info.width, info.height)


def _analyse_view(config: RigConfig, path: str, info: video.VideoInfo, frames: np.ndarray,
                  fixed_box: Optional[np.ndarray], first: int, count: int):
    """Person boxes [K, 4] (full pixels), grey motion crops [K, m, m] at video ``frames``,
    and the median background (RGB, full size) of one view."""
    scale = min(1.0, config.analysis_size / max(info.width, info.height))
    small = (lambda im: im) if scale == 1.0 else (lambda im: cv2.resize(
        im, (round(info.width * scale), round(info.height * scale)),
        interpolation=cv2.INTER_AREA))
    # Pixel centres are integers at both scales: u_small = (u + 0.5) * scale - 0.5.
    to_small = lambda b: (np.asarray(b) + 0.5) * scale - 0.5
    to_full = lambda b: (np.asarray(b) + 0.5) / scale - 0.5
    need_bg = config.crop == "mask" or config.background == "remove"
    background = small_bg = None
    if need_bg:
        samples, _ = video.sample_frames(
            path, video.sample_indices(count, config.background_samples, first))
        background = video.masked_median(samples)
        if config.crop == "mask":
            # Second estimate ignoring where the first one found the person: someone who
            # lingers in one place would otherwise be painted into the background.
            small_bg0 = small(background)
            found = [video.person_box(video.foreground_mask(small(s), small_bg0,
                                                            config.mask_threshold), 0.1)
                     for s in samples]
            boxes = np.array([np.full(4, np.nan) if b is None else to_full(b) for b in found])
            background = video.masked_median(samples, boxes)
        small_bg = small(background)
    boxes, grey = [], []
    with video.FrameReader(path) as reader:
        for i in frames:
            frame = small(reader.read(int(i)))
            if fixed_box is not None:
                box = to_small(fixed_box)
            else:
                box = video.person_box(video.foreground_mask(frame, small_bg,
                                                             config.mask_threshold),
                                       config.margin)
            boxes.append(None if box is None else to_full(box))
            g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            grey.append(None if box is None else crops.crop_image(g, box, _MOTION_CROP))
    return boxes, grey, background


def produce_sequence(task: tuple[RigConfig, RigSequence]
                     ) -> Iterator[Union[schema.Clip, dataset_io.Skipped]]:
    """Clips (and skip notes) of one rig sequence; the shard producer of :func:`convert`."""
    config, seq = task
    offsets = dict(seq.info.frame_offsets)
    views, infos = [], []
    for cam_id, path in seq.videos:
        try:
            infos.append(video.probe(path))
            views.append((cam_id, path))
        except video.VideoError as e:
            log.warning("%s", e)
            yield dataset_io.Skipped(f"{seq.sequence_id}.{cam_id}", str(e))
    if len(views) < config.min_views:
        yield dataset_io.Skipped(seq.sequence_id, f"only {len(views)} readable camera(s), "
                                                  f"{config.min_views} needed")
        return
    fps = config.fps or infos[0].fps
    if not fps or fps <= 0:
        yield dataset_io.Skipped(seq.sequence_id, f"{infos[0].path} reports no frame rate; "
                                                  f"pass --fps")
        return
    if config.fps is None and any(abs(i.fps - fps) > 0.01 for i in infos):
        log.warning("%s: cameras report different frame rates %s; recording %.3f",
                    seq.sequence_id, [i.fps for i in infos], fps)
    # Common timeline: t valid for every camera c when t + offset_c < frames_c.
    avail = {c: i.num_frames - offsets.get(c, 0) for (c, _), i in zip(views, infos)}
    length = min(avail.values())
    if length < 1:
        yield dataset_io.Skipped(seq.sequence_id, f"no frame common to all cameras after the "
                                                  f"frame offsets (frames after offset: {avail})")
        return
    if len(set(avail.values())) > 1:
        msg = (f"videos have different lengths (frames after offset: {avail}); truncated to "
               f"the common {length} frames")
        log.warning("%s: %s", seq.sequence_id, msg)
        yield dataset_io.Skipped(f"{seq.sequence_id} frames {length}..{max(avail.values()) - 1}",
                                 msg)

    calib = dict(seq.calibration) if seq.calibration else None
    if calib is None:
        log.warning("%s: no %s; storing placeholder camera parameters", seq.sequence_id,
                    CALIBRATION)
    cams = [_fit_camera(calib[c], i) if calib else _placeholder_camera(c, i.width, i.height)
            for (c, _), i in zip(views, infos)]
    fixed = dict(seq.info.crop_boxes)
    candidates = np.arange(0, length, config.frame_step)
    all_boxes, all_grey, backgrounds = [], [], []
    for (cam_id, path), info in zip(views, infos):
        off = offsets.get(cam_id, 0)
        fixed_box = None
        if config.crop == "fixed":
            side = min(info.width, info.height)
            fixed_box = np.asarray(fixed.get(cam_id, ((info.width - side) / 2,
                                                      (info.height - side) / 2,
                                                      (info.width + side) / 2 - 1,
                                                      (info.height + side) / 2 - 1)), np.float64)
        boxes, grey, bg = _analyse_view(config, path, info, candidates + off, fixed_box, off,
                                        length)
        if all(b is None for b in boxes):
            yield dataset_io.Skipped(f"{seq.sequence_id}.{cam_id}",
                                     "no person found in any frame (foreground mask empty); "
                                     "try --crop=fixed or a lower --mask_threshold")
            return
        all_boxes.append(video.fill_and_smooth_boxes(boxes, config.box_smoothing))
        blank = np.zeros((_MOTION_CROP, _MOTION_CROP), np.uint8)
        all_grey.append([blank if g is None else g for g in grey])
        backgrounds.append(bg)
    boxes = np.stack(all_boxes, 1)                          # [K, V, 4]
    grey = np.concatenate([np.stack(g) for g in all_grey], 1)  # [K, V*m, m]
    keep = motion_filter.moving_frames_2d(grey, config.motion_threshold)
    kept, boxes = candidates[keep], boxes[keep]
    frame_indices = kept[:, None] + np.array([offsets.get(c, 0) for c, _ in views])[None]
    timesteps = video.crop_timesteps(
        [p for _, p in views], frame_indices, boxes, config.image_size,
        backgrounds=backgrounds if config.background == "remove" else None,
        quality=config.jpeg_quality, mask_threshold=config.mask_threshold)
    end = 0
    try:
        for clip_index, (start, images) in enumerate(video.clip_chunks(timesteps,
                                                                       config.clip_length)):
            end = start + len(images)
            yield schema.Clip(
                subject=seq.subject, action=seq.action, sequence_id=seq.sequence_id,
                fps=float(fps), clip_index=clip_index,
                frame_index=kept[start:end].astype(np.int64),
                camera_ids=[c.camera_id for c in cams],
                intrinsics=np.stack([c.intrinsics for c in cams]),
                distortion=np.stack([c.distortion for c in cams]),
                rotation=np.stack([c.rotation for c in cams]),
                translation=np.stack([c.translation for c in cams]),
                image_wh=np.array([[c.width, c.height] for c in cams], np.int64),
                image_size=config.image_size, has_background=config.background == "keep",
                images=images, crop_boxes=boxes[start:end], joints3d_world=None)
    except video.VideoError as e:
        log.warning("%s", e)
        yield dataset_io.Skipped(f"{seq.sequence_id} frames {int(kept[end])}..",
                                 f"video ended early ({e}); sequence truncated")


# ---------------------------------------------------------------------------- driver


def convert(config: RigConfig, output_dir: str, num_workers: int = 1, log_fn=print) -> dict:
    """Converts (or resumes converting) a rig folder; returns the manifest.

    Raises:
      RigError: the folder is not in the expected format or nothing is convertible.
      dataset_io.DatasetError: ``output_dir`` holds a dataset with other settings.
    """
    specs, skipped = discover(config)
    return dataset_io.write_sequences(output_dir, writer=WRITER, config=config, specs=specs,
                                      skipped=skipped, producer=produce_sequence,
                                      num_workers=num_workers, log=log_fn)


def main(argv: Sequence[str]) -> None:
    from absl import flags
    cli.check_no_arguments(argv)
    f = flags.FLAGS
    config = RigConfig(
        input_dir=f.input_dir, subject=f.subject,
        sequences=tuple(f.sequences) if f.sequences else None, fps=f.fps,
        frame_step=f.frame_step, image_size=f.image_size, clip_length=f.clip_length,
        crop=f.crop, margin=f.margin, background=f.background,
        motion_threshold=f.motion_threshold, mask_threshold=f.mask_threshold,
        jpeg_quality=f.jpeg_quality)
    manifest = convert(config, f.output_dir, num_workers=f.num_workers)
    t = manifest["totals"]
    print(f"wrote {t.get('num_records', 0)} records, {t.get('num_frames', 0)} timesteps, "
          f"{t.get('num_images', 0)} crops to {f.output_dir}; "
          f"{len(manifest['skipped'])} skipped items listed in manifest.json")


def define_flags() -> None:
    from absl import flags
    flags.DEFINE_string("input_dir", None, "Folder of sequence folders (one video per camera).")
    flags.DEFINE_string("output_dir", None, "Dataset directory to write (or resume).")
    flags.DEFINE_string("subject", "rig", "Subject name where sequence.json gives none.")
    flags.DEFINE_list("sequences", [], "Sequence folders to convert; empty for all.")
    flags.DEFINE_float("fps", None, "Frame rate to record; default: the videos'.")
    flags.DEFINE_integer("frame_step", 1, "Keep every n-th frame before motion filtering.")
    flags.DEFINE_integer("image_size", 160, "Side of the stored square crops (pixels).")
    flags.DEFINE_integer("clip_length", 256, "Kept timesteps per record.")
    flags.DEFINE_enum("crop", "mask", ["mask", "fixed"], "Person box from the foreground mask "
                      "of the median background, or one fixed box per camera (sequence.json "
                      "crop_boxes, else the centred square).")
    flags.DEFINE_float("margin", 0.2, "Crop margin around the foreground box.")
    flags.DEFINE_enum("background", "keep", ["keep", "remove"],
                      "Keep the scene, or remove it (median background + foreground mask).")
    flags.DEFINE_float("motion_threshold", 2.0, "Mean grey-level change inside the person crops "
                                                "needed to keep a frame; 0 keeps all.")
    flags.DEFINE_float("mask_threshold", 30.0, "Grey-level difference to the median background "
                                               "that counts as person.")
    flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of the crops.")
    flags.DEFINE_integer("num_workers", 1, "Sequences converted in parallel (processes).")
    flags.mark_flags_as_required(["input_dir", "output_dir"])


if __name__ == "__main__":
    define_flags()
    cli.run(main)
