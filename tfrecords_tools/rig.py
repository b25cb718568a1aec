"""Any synchronized multi-camera rig -> tf_synchro TFRecords (no labels: pretraining).

    python -m tfrecords_tools.rig --input_dir /data/my_rig --output_dir /data/my_rig_tfr

Folder format (one folder per sequence, one video per camera; names are free)::

    my_rig/
      calibration.json          optional, shared by every sequence (or --calibration=FILE)
      dance_01/
        cam_left.mp4            camera id = file stem
        cam_right.mp4
        cam_back.mp4
        calibration.toml        optional, overrides the shared one for this sequence
        sequence.json           optional: {"subject": "P1", "action": "Dance",
                                           "frame_offsets": {"cam_right": 5},
                                           "crop_boxes": {"cam_left": [x0, y0, x1, y1]}}
        background/             optional clean plates: frames of the empty scene,
          cam_left.mp4          one video per camera id (see --background_video)
      walk_02/
        a.mp4
        b.avi

Calibration files may be in any format of ``tfrecords_tools/calibration.py``
(``calibration.json``, ``calibration.toml`` (Anipose), ``calibration.yml`` / ``.xml``
(OpenCV), Qualisys ``*.qca.txt``, Human3.6M-style JSON); a video gets the camera of its
name, or the one whose name is a separate token of its file name (a QTM serial in
``Walk_Miqus_3_28496.avi``). The calibrated image size must be the video's or a resize
of it (same aspect ratio: the intrinsics are scaled).

``frame_offsets``: video frame ``t + offset`` of a camera shows the same instant as
frame ``t`` of a camera with offset 0 (cameras started recording ``offset`` frames
early). Stored ``clip/frame_index`` values are in this common timeline.

Frame rates: pairing frames by index is only right when every camera runs at the same
rate, so a sequence whose cameras' rates differ by more than ``RATE_TOLERANCE`` (0.01 %,
one frame of drift per 10,000 frames: 29.97 and 30 differ) is skipped with the cameras
and rates named, unless ``resample_fps`` (``--resample_fps=F``) is given. Then frame ``i``
of camera ``c`` shows time ``(i - offset_c) / fps_c`` (offsets in the camera's own
frames), and timestep ``k`` of the records takes, in every view, the frame nearest to time
``k / F`` (``floor(k * fps_c / F + 0.5) + offset_c``; ties take the later frame), so views
differ by at most half a frame of their own camera; a camera slower than ``F`` repeats
frames. ``frame_index`` then counts timesteps at rate ``F``. ``fps`` (``--fps``) is
another concept: the rate every video runs at, for containers that report none or a
wrong one (it overrides theirs; without resampling the records are labelled with it).
A frame offset not smaller than its video is refused; views end at the shortest video
(after the offsets), listed as truncated when durations differ by a timestep or more.

The person is found by background subtraction (no detector weights) in
:mod:`tfrecords_tools.person_boxes`: against a clean plate where one is given (the
sequence's ``background/`` folder, else the ``--background_video`` folder: one video of
the empty scene per camera id), else a per-camera, per-sequence median refined by ignoring
where people were found in a first pass; one person is tracked (others are counted and
listed in the manifest), calibrated views are checked against each other, and boxes are
held through short dropouts and smoothed. With
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

from tfrecords_tools import (calibration, cameras, crops, dataset_io, motion_filter,
                             person_boxes, schema, video)
from tfrecords_tools.runtime import cli, locks
from tfrecords_tools.runtime import flags as flag_engine
from tfrecords_tools.runtime.flags import setting

log = logging.getLogger(__name__)

WRITER = "tfrecords_tools.rig"
SEQUENCE_INFO = "sequence.json"
PLATES = "background"  # sequence sub-folder of clean plates, one video per camera id
_MOTION_CROP = 32  # side of the grey person crops compared by the motion filter
# Largest relative difference of two cameras' frame rates that still counts as one rate:
# pairing frames by index then drifts at most one frame per 10,000 frames.
RATE_TOLERANCE = 1e-4
CALIBRATION_UNITS = calibration.UNITS  # (The field `calibration` hides the module in RigConfig.)


class RigError(ValueError):
    """The input folder, a metadata file or a converter argument is not usable."""


@dataclasses.dataclass(frozen=True)
class RigConfig:
    """Settings of one rig conversion (the binary's flags; stored in the manifest).

    Attributes:
      input_dir: folder of sequence folders.
      subject: subject name for sequences without ``sequence.json`` "subject".
      calibration: calibration file (or folder of OpenCV files) for every sequence, in any
        format of ``tfrecords_tools/calibration.py``; a calibration file in a sequence
        folder overrides it. None: ``<input_dir>/calibration.*`` if there is one.
      calibration_units: translation units of the calibration files: "auto" (see
        ``tfrecords_tools/calibration.py``), "mm" or "m".
      sequences: folder names to convert; None for all.
      fps: frame rate of every video, overriding what the containers report (for files
        that report none or a wrong one); None: each container's rate.
      resample_fps: frame rate of the records: every camera is resampled to it by
        timestamps (nearest frame); None: the cameras must share one frame rate (within
        ``RATE_TOLERANCE``), which is recorded.
      frame_step: keep every n-th frame (timestep) before motion filtering.
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
      box_background: background model of the person boxes ("auto": the clean plate
        where a camera has one, else "median"; or "plate", "median", "mog2").
      background_video: folder of clean plates (one video of the empty scene per camera
        id) for sequences without a ``background/`` folder; None: none.
      hold_frames: a dropout of up to this many frames keeps the last person box.
      multiview_tolerance: with calibration, a view's box centre may lie this many
        projected person heights from the other views' consensus before it is replaced.
      jpeg_quality: JPEG quality of the crops.
      min_views: sequences with fewer usable cameras are skipped.
    """

    input_dir: str = setting(None, "Folder of sequence folders (one video per camera).",
                             required=True, path=True)
    subject: str = setting("rig", "Subject name where sequence.json gives none.")
    calibration: Optional[str] = setting(
        None, "Calibration file (or folder of OpenCV files) for every sequence: "
        "calibration.json, Qualisys .qca.txt, Anipose .toml, OpenCV .yml/.xml, "
        "Human3.6M-style .json; a calibration file in a sequence folder overrides it. "
        "Default: <input_dir>/calibration.*", path=True)
    calibration_units: str = setting(
        "auto", "Translation units of the calibration files; auto: mm for qca, h36m and "
        "calibration.json, and for toml/OpenCV files metres when every camera is within 50 "
        "units of the origin, else mm.", choices=CALIBRATION_UNITS)
    sequences: Optional[tuple] = setting(None, "Sequence folders to convert; empty for all.")
    fps: Optional[float] = setting(
        None, "Frame rate of every video, overriding what the containers report (for files "
        "that report none or a wrong one); default: each container's. Without --resample_fps "
        "the records are labelled with it.", above=0)
    resample_fps: Optional[float] = setting(
        None, "Frame rate of the records: every camera is resampled to it by timestamps "
        "(nearest frame, frame_offsets in the camera's own frames). Default: none; cameras at "
        "different frame rates are then skipped with the rates listed.", above=0)
    frame_step: int = setting(1, "Keep every n-th frame (timestep) before motion filtering.",
                              minimum=1)
    image_size: int = setting(160, "Side of the stored square crops (pixels).",
                              minimum=schema.MIN_IMAGE_SIZE, maximum=schema.MAX_IMAGE_SIZE)
    clip_length: int = setting(256, "Kept timesteps per record.",
                               minimum=schema.MIN_CLIP_LENGTH, reason=schema.MIN_CLIP_REASON)
    crop: str = setting("mask", "Person box from the foreground mask of the median background, "
                        "or one fixed box per camera (sequence.json crop_boxes, else the "
                        "centred square).", choices=("mask", "fixed"))
    margin: float = setting(0.2, "Crop margin around the foreground box.", minimum=0)
    background: str = setting("keep", "Keep the scene, or remove it: black everywhere but the "
                              "tracked person's blob (filled, dilated; other people removed "
                              "too).", choices=("keep", "remove"))
    motion_threshold: float = setting(2.0, "Mean grey-level change inside the person crops "
                                      "needed to keep a frame; 0 keeps all.", minimum=0,
                                      maximum=255)
    mask_threshold: float = setting(30.0, "Grey-level difference to the median background "
                                    "that counts as person.", minimum=0, maximum=255)
    background_samples: int = setting(40, flag=False, minimum=1)
    analysis_size: int = setting(320, flag=False, minimum=32)
    box_smoothing: int = setting(5, flag=False, minimum=1)
    box_background: str = setting(
        "auto", "Background model of the person boxes: auto (the clean plate where a camera "
        "has one, else median), plate, median (two-pass, over the take) or mog2 (OpenCV "
        "MOG2's background image over the take).", choices=person_boxes.BACKGROUNDS)
    background_video: Optional[str] = setting(
        None, "Folder of clean plates: one video of the empty scene per camera id (file stem), "
        "for sequences without their own background/ folder (keep it outside --input_dir, "
        "where it would be taken for a sequence). Needed for a person who barely moves.", path=True)
    hold_frames: int = setting(10, "A person-box dropout of up to this many frames keeps the "
                               "last box.", minimum=0)
    multiview_tolerance: float = setting(
        0.25, "With a calibration (3+ cameras): a view's person box may lie this many "
        "projected person heights from the other views' triangulation before it is replaced.",
        above=0)
    jpeg_quality: int = setting(90, "JPEG quality of the crops.", minimum=1, maximum=100)
    min_views: int = setting(2, flag=False, minimum=1)

    def __post_init__(self):
        """Declared ranges first, then what they cannot say (a folder, a name)."""
        try:
            flag_engine.check_ranges(self)
        except ValueError as e:
            raise RigError(str(e)) from None
        checks = [
            (self.background_video is None or os.path.isdir(self.background_video),
             "background_video", "a folder of videos, one per camera id"),
            (bool(self.subject), "subject", "a non-empty name"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise RigError(f"--{name}={getattr(self, name)!r}: expected {expected}")

    def settings(self) -> dict:
        out = dataclasses.asdict(self)
        out["input_dir"] = os.path.abspath(self.input_dir)
        if self.calibration:
            out["calibration"] = os.path.abspath(self.calibration)
        if self.background_video:
            out["background_video"] = os.path.abspath(self.background_video)
        return out

    def box_config(self) -> person_boxes.BoxConfig:
        """The person-box settings these flags choose."""
        return person_boxes.BoxConfig(
            background=self.box_background, threshold=self.mask_threshold,
            samples=self.background_samples, analysis_size=self.analysis_size,
            margin=self.margin, smoothing=self.box_smoothing, hold_frames=self.hold_frames,
            multiview_tolerance=self.multiview_tolerance)


# ---------------------------------------------------------------------------- metadata


def load_calibration(path: str, units: str = "auto") -> dict[str, cameras.Camera]:
    """Cameras of a calibration file of any format of :mod:`tfrecords_tools.calibration`
    (``calibration.json``, Qualisys ``.qca.txt``, Anipose TOML, OpenCV YAML/XML, Human3.6M
    JSON), validated, in mm and pixels.

    Raises:
      RigError: unreadable file or a malformed camera (named with the field at fault).
    """
    try:
        return calibration.load(path, units=units)
    except calibration.CalibrationError as e:
        raise RigError(str(e)) from None


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


# ---------------------------------------------------------------------------- timeline


@dataclasses.dataclass(frozen=True)
class Timeline:
    """The video frame every record timestep shows, per camera (module docstring)."""

    frames: np.ndarray          # [K, V] video frame numbers, non-decreasing per camera
    fps: float                  # rate of the timesteps (``sequence/fps``)
    warnings: tuple = ()        # one-line notes to log
    truncated: Optional[tuple] = None  # (first, last) timesteps only some views have, message


def _rates_text(rates: dict) -> str:
    return ", ".join(f"{c} {r:g} fps" for c, r in rates.items())


def sequence_timeline(config: RigConfig, camera_ids: Sequence[str],
                      infos: Sequence[video.VideoInfo], offsets: dict) -> Timeline:
    """Frame rates, offsets and lengths of one sequence's videos -> synchronized timesteps.

    Raises:
      RigError: a video without a frame rate, cameras at different rates (without
        ``resample_fps``), or a frame offset not smaller than its video (one line naming
        the camera and the values).
    """
    rates = {}
    for c, info in zip(camera_ids, infos):
        rate = config.fps or info.fps
        if not rate or not np.isfinite(rate) or rate <= 0:
            raise RigError(f"{info.path} reports no frame rate; pass --fps=R (the rate of "
                           f"every video)")
        rates[c] = float(rate)
    notes = []
    if config.fps:
        differ = {c: i.fps for c, i in zip(camera_ids, infos)
                  if i.fps > 0 and abs(i.fps - config.fps) > RATE_TOLERANCE * config.fps}
        if differ:
            notes.append(f"--fps={config.fps:g} overrides the frame rates the videos report "
                         f"({_rates_text(differ)})")
    lengths = {c: info.num_frames for c, info in zip(camera_ids, infos)}
    for c in camera_ids:
        off = offsets.get(c, 0)
        if off >= lengths[c]:
            raise RigError(f"frame_offsets[{c!r}] = {off} is not smaller than the video's "
                           f"{lengths[c]} frames ({lengths[c] / rates[c]:.3f} s at "
                           f"{rates[c]:g} fps): no instant common to all cameras")
    if config.resample_fps is None:
        if max(rates.values()) - min(rates.values()) > RATE_TOLERANCE * max(rates.values()):
            raise RigError(f"cameras run at different frame rates ({_rates_text(rates)}; "
                           f"tolerance {RATE_TOLERANCE:.2%}): frames paired by index would "
                           f"show different instants; pass --resample_fps=F to resample "
                           f"every camera to rate F")
        fps = rates[camera_ids[0]]
        ratio = {c: 1.0 for c in camera_ids}  # frames paired by index, exactly
    else:
        fps = float(config.resample_fps)
        ratio = {c: rates[c] / fps for c in camera_ids}  # video frames per timestep

    def source(c: str, k: np.ndarray) -> np.ndarray:
        # Nearest frame to time k / fps; the epsilon makes float ties go to the later frame.
        return np.floor(k * ratio[c] + 0.5 + 1e-9).astype(np.int64) + offsets.get(c, 0)

    counts = {}
    for c in camera_ids:
        k = np.arange(int(np.ceil((lengths[c] - offsets.get(c, 0)) / ratio[c])) + 2)
        counts[c] = int(np.count_nonzero(source(c, k) < lengths[c]))
    length = min(counts.values())  # >= 1: every offset is inside its video
    frames = np.stack([source(c, np.arange(length)) for c in camera_ids], 1)
    durations = [(lengths[c] - offsets.get(c, 0)) / rates[c] for c in camera_ids]
    truncated = None
    # Under a timestep of difference is sampling (a slower view's last frame can be nearer
    # to a time past its end), not views of different lengths.
    if max(counts.values()) > length and max(durations) - min(durations) > 1 / fps - 1e-9:
        after = ", ".join(
            f"{c!r}: {lengths[c] - offsets.get(c, 0)} frames at {rates[c]:g} fps = "
            f"{(lengths[c] - offsets.get(c, 0)) / rates[c]:.3f} s" for c in camera_ids)
        truncated = ((length, max(counts.values()) - 1),
                     f"videos have different lengths (after the frame offsets: {after}); "
                     f"truncated to the common {length} timesteps ({length / fps:.3f} s)")
    return Timeline(frames, fps, tuple(notes), truncated)


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
    plates: tuple = ()            # ((camera_id, clean-plate video path), ...)

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
        raise RigError(f"--input_dir {root} {locks.not_a_directory(root, 'is not a directory')}")
    if video.find_videos(root):
        raise RigError(f"{root} holds videos directly; expected one sub-folder per sequence "
                       f"(<input_dir>/<sequence>/<camera>.mp4): point --input_dir one level up "
                       f"or move the videos into a sequence folder")
    shared_calib, shared_error = _shared_calibration(config)
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
        except (RigError, calibration.CalibrationError, video.VideoError) as e:
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


def _shared_calibration(config: RigConfig) -> tuple[Optional[dict], Optional[str]]:
    """The calibration of every sequence (``--calibration``, else ``<input_dir>/
    calibration.*``) and, for the latter, the error that makes it unusable."""
    if config.calibration:
        if not os.path.exists(config.calibration):
            raise RigError(f"--calibration {config.calibration}: no such file or folder")
        try:
            return calibration.load(config.calibration, units=config.calibration_units), None
        except calibration.CalibrationError as e:
            # Named on the command line: refused before any work, as a usage error.
            raise RigError(f"--calibration: {e}") from None
    try:
        path = calibration.find(config.input_dir)
        if path is None:
            return None, None
        return calibration.load(path, units=config.calibration_units), None
    except calibration.CalibrationError as e:
        # Only sequences without their own calibration need it: they are skipped.
        return None, str(e)


def _sequence(config, name, shared_calib, shared_error) -> Optional[RigSequence]:
    sdir = os.path.join(config.input_dir, name)
    videos = video.find_videos(sdir)
    if len(videos) < config.min_views:
        raise RigError(f"{len(videos)} video(s) in {sdir}, {config.min_views} needed "
                       f"(one video per camera)")
    info = SequenceInfo()
    if os.path.exists(os.path.join(sdir, SEQUENCE_INFO)):
        info = load_sequence_info(os.path.join(sdir, SEQUENCE_INFO))
    own = calibration.find(sdir)
    calib, source = shared_calib, config.calibration or config.input_dir
    if own is not None:
        calib, source = calibration.load(own, units=config.calibration_units), own
    elif shared_error:
        raise RigError(shared_error)
    for what, names in (("frame_offsets", dict(info.frame_offsets)),
                        ("crop_boxes", dict(info.crop_boxes))):
        unknown = sorted(set(names) - set(videos))
        if unknown:
            raise RigError(f"{os.path.join(sdir, SEQUENCE_INFO)}: {what} names cameras "
                           f"{unknown} without a video (videos: {sorted(videos)})")
    # Image sizes, frame rates and offsets are checked before any work (probing reads one
    # frame); unreadable videos are skipped later, with their own reason.
    probes = {}
    for cam_id in sorted(videos):
        try:
            probes[cam_id] = video.probe(videos[cam_id])
        except video.VideoError:
            continue
    matched = None
    if calib is not None:
        matched = calibration.match_cameras(calib, sorted(videos), source)
        for cam_id, cam in matched.items():
            if cam_id in probes:
                calibration.check_image_size(cam, probes[cam_id].width, probes[cam_id].height,
                                             videos[cam_id])
    if probes:
        sequence_timeline(config, list(probes), list(probes.values()), dict(info.frame_offsets))
    plates = _plates(config, sdir, videos)
    return RigSequence(
        name=name, subject=info.subject or config.subject, action=info.action or name,
        videos=tuple(sorted(videos.items())),
        calibration=None if matched is None else tuple((c, matched[c]) for c in sorted(videos)),
        info=info, plates=tuple(sorted(plates.items())))


def _plates(config: RigConfig, sdir: str, videos: dict) -> dict:
    """{camera id: clean-plate video}: the sequence's ``background/`` folder if it exists,
    else the ``--background_video`` folder; a file stem must be a camera id."""
    folder = os.path.join(sdir, PLATES)
    if not os.path.isdir(folder):
        folder = config.background_video
    if folder is None:
        plates = {}
    else:
        plates = video.find_videos(folder)
        unknown = sorted(set(plates) - set(videos))
        if unknown and os.path.dirname(folder) == sdir:
            raise RigError(f"{folder}: clean plates {unknown} match no camera video "
                           f"(videos: {sorted(videos)})")
        plates = {c: p for c, p in plates.items() if c in videos}
    missing = sorted(set(videos) - set(plates))
    if config.box_background == "plate" and missing:
        raise RigError(f"--box_background=plate but cameras {missing} have no clean plate "
                       f"(a video named after the camera in {os.path.join(sdir, PLATES)} or "
                       f"--background_video)")
    return plates


# ---------------------------------------------------------------------------- producer


def _placeholder_camera(camera_id: str, width: int, height: int) -> cameras.Camera:
    """Stand-in geometry for an uncalibrated camera (records need some; pretraining
    ignores it): ~53 degree field of view, centred principal point, identity pose."""
    f = float(max(width, height))
    return cameras.Camera(camera_id, f, f, (width - 1) / 2, (height - 1) / 2, width, height,
                          np.eye(3), np.zeros(3))


def _fit_camera(cam: cameras.Camera, info: video.VideoInfo) -> cameras.Camera:
    """``cam`` for the video's size (intrinsics scaled for a resized video; discover has
    refused other aspect ratios)."""
    return calibration.fit_to_image(cam, info.width, info.height, info.path)


def _fixed_box(seq: RigSequence, cam_id: str, info: video.VideoInfo) -> np.ndarray:
    """``sequence.json`` crop box of a camera, else the largest centred square."""
    side = min(info.width, info.height)
    default = ((info.width - side) / 2, (info.height - side) / 2,
               (info.width + side) / 2 - 1, (info.height + side) / 2 - 1)
    return np.asarray(dict(seq.info.crop_boxes).get(cam_id, default), np.float64)


def _analyse(config: RigConfig, seq: RigSequence, views: list, infos: list,
             positions: list, cams: Optional[list]):
    """Person boxes of every view (a :class:`person_boxes.BoxResult`, or None when neither
    the boxes nor the keep masks are needed) and grey motion crops [K, V*m, m]."""
    num = len(positions[0])
    fixed = ([_fixed_box(seq, c, i) for (c, _), i in zip(views, infos)]
             if config.crop == "fixed" else None)
    scales = [person_boxes.analysis_scale(i.width, i.height, config.analysis_size)
              for i in infos]
    blank = np.zeros((_MOTION_CROP, _MOTION_CROP), np.uint8)
    grey = [[blank] * num for _ in views]

    def motion_crop(v, t, small, people):
        to_small = lambda b: (np.asarray(b) + 0.5) * scales[v] - 0.5
        if fixed is not None:
            box = to_small(fixed[v])
        elif people:  # The largest person blob of this frame, as the crops will frame it.
            box = crops.square_box(people[0].box.reshape(2, 2), config.margin)
        else:
            return
        g = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        grey[v][t] = crops.crop_image(g, box, _MOTION_CROP)

    sources = [video.VideoFrames(path, tuple(int(i) for i in pos), info.width, info.height)
               for (_, path), info, pos in zip(views, infos, positions)]
    result = None
    if config.crop == "mask" or config.background == "remove":
        plate_paths = dict(seq.plates)
        plates = []
        for (cam_id, _), info in zip(views, infos):
            path = plate_paths.get(cam_id)
            if path is None:
                plates.append(None)
                continue
            p = video.probe(path)
            if (p.width, p.height) != (info.width, info.height):
                raise RigError(f"clean plate {path} is {p.width}x{p.height}, the camera's "
                               f"video {info.width}x{info.height}")
            plates.append(video.VideoFrames(path, tuple(range(p.num_frames)), p.width,
                                            p.height))
        result = person_boxes.find_boxes(sources, config.box_config(), cameras=cams,
                                         plates=plates, name=seq.sequence_id,
                                         on_frame=motion_crop)
    else:
        for v, src in enumerate(sources):
            sc = person_boxes.analysis_scale(src.width, src.height, config.analysis_size)
            for t, frame in enumerate(src.frames()):
                small = frame if sc == 1.0 else cv2.resize(
                    frame, (round(src.width * sc), round(src.height * sc)),
                    interpolation=cv2.INTER_AREA)
                motion_crop(v, t, small, [])
    grey = np.concatenate([np.stack(g) for g in grey], 1)
    return result, fixed, grey


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
    try:
        timeline = sequence_timeline(config, [c for c, _ in views], infos, offsets)
    except RigError as e:  # Checked by discover too; here on the cameras readable now.
        yield dataset_io.Skipped(seq.sequence_id, str(e))
        return
    for note in timeline.warnings:
        log.warning("%s: %s", seq.sequence_id, note)
    if timeline.truncated:
        (first, last), msg = timeline.truncated
        log.warning("%s: %s", seq.sequence_id, msg)
        yield dataset_io.Skipped(f"{seq.sequence_id} frames {first}..{last}", msg)
    fps, length = timeline.fps, len(timeline.frames)
    source = dict(zip([c for c, _ in views], timeline.frames.T))  # video frame per timestep

    calib = dict(seq.calibration) if seq.calibration else None
    if calib is None:
        log.warning("%s: no calibration file; storing placeholder camera parameters",
                    seq.sequence_id)
    cams = [_fit_camera(calib[c], i) if calib else _placeholder_camera(c, i.width, i.height)
            for (c, _), i in zip(views, infos)]
    candidates = np.arange(0, length, config.frame_step)
    positions = [source[c][candidates] for c, _ in views]  # video frames analysed
    try:
        result, fixed, grey = _analyse(config, seq, views, infos, positions,
                                       cams if calib else None)
    except (RigError, video.VideoError) as e:
        yield dataset_io.Skipped(seq.sequence_id, str(e))
        return
    if config.crop == "mask":
        for v, (cam_id, _) in enumerate(views):
            if not result.found[v].any():
                yield dataset_io.Skipped(f"{seq.sequence_id}.{cam_id}",
                                         "no person found in any frame (foreground mask "
                                         "empty); try --crop=fixed or a lower "
                                         "--mask_threshold")
                return
        boxes = np.transpose(result.boxes, (1, 0, 2))             # [K, V, 4]
    else:
        boxes = np.broadcast_to(np.stack(fixed), (len(candidates), len(views), 4)).copy()
    if result is not None and result.people_seen > 1:
        yield dataset_io.Skipped(f"{seq.sequence_id} people",
                                 f"{result.people_seen} people seen at once; the crops "
                                 f"follow the most persistent one ({'; '.join(result.notes)})")
    keep = motion_filter.moving_frames_2d(grey, config.motion_threshold)
    kept, boxes = candidates[keep], boxes[keep]
    kept_pos = np.flatnonzero(keep)
    frame_indices = timeline.frames[kept]
    keep_mask = None
    if config.background == "remove":
        keep_mask = lambda k, v, box, size: result.keep_crop(v, int(kept_pos[k]), box, size)
    timesteps = video.crop_timesteps(
        [p for _, p in views], frame_indices, boxes, config.image_size,
        quality=config.jpeg_quality, keep=keep_mask)
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


def convert(config: RigConfig, output_dir: str, log_fn=print, **options) -> dict:
    """Converts (or resumes converting) a rig folder; returns the manifest.

    Raises:
      RigError: the folder is not in the expected format or nothing is convertible.
      dataset_io.DatasetError: ``output_dir`` holds a dataset with other settings.
    """
    inside = os.path.relpath(os.path.realpath(output_dir), os.path.realpath(config.input_dir))
    if inside == os.curdir or not inside.startswith(os.pardir):
        raise RigError(f"--output_dir={output_dir} is inside --input_dir={config.input_dir}, "
                       f"where the dataset would be read as (part of) a sequence; expected a "
                       f"folder outside it")
    return dataset_io.write_sequences(output_dir, WRITER, config, discover, produce_sequence,
                                      log_fn=log_fn, **options)


@dataclasses.dataclass(frozen=True)
class RigRun(dataset_io.ConversionRun):
    """One rig invocation: where to write, how many processes, and the conversion's
    settings (an empty ``--sequences`` list: all)."""

    NESTED, ALL_IF_EMPTY = "rig", "sequences"
    rig: RigConfig = setting(factory=RigConfig)


def main(argv: Sequence[str]) -> None:
    cli.check_no_arguments(argv)
    dataset_io.convert_from_flags(RigRun, convert, WRITER)


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`RigRun`."""
    flag_engine.define_flags(RigRun, flag_values, binary=WRITER)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
