"""Inference on your own video or images: 3D joints per frame (the predict binary).

``--model`` is an exported version directory (``tf_synchro.export``) or a finished
fine-tuning run directory. The person box of each frame comes from ``--boxes`` (one box per
frame), else from a median background and a foreground mask as the rig converter finds it
(``--static_camera``, the default), else the whole frame (with a warning). The crop is made
exactly as the training data was: the square box resampled to the stored crop side
(:func:`tfrecords_tools.crops.crop_image`), JPEG-compressed at the converters' quality and
decoded (:func:`tf_synchro.data.frames.decode_jpeg`), then the evaluation preprocessing
(:func:`tf_synchro.data.frames.preprocess_images`). So a frame converted into a dataset and
evaluated gets the very joints this binary prints.

Output: root-relative 3D joints in mm in the camera frame (x right, y down, z forward;
root = pelvis) per frame, in :data:`tfrecords_tools.skeleton.JOINT_NAMES` order, with the
square box used and whether a person was found there. Exit status 2: bad flags; 1: bad
data (unreadable video, empty folder, bad box file, bad model directory).
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import io
import json
import logging
import os
import sys
import time
from typing import Callable, Iterator, Optional, Sequence

import cv2
import numpy as np
import tensorflow as tf

from tf_synchro import run_dir, serving
from tf_synchro.configs import PredictConfig
from tf_synchro.data import frames
from tfrecords_tools import cli, crops, dataset_io, rig, skeleton, video

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_CROP_SIZE = 160  # The converters' default stored crop side.
MIN_FRAME_SIDE = 8  # Smaller frames are refused (no person to crop).
COORDINATES = "camera frame, root-relative (pelvis = 0): x right, y down, z forward; mm"


UsageError = cli.UsageError  # Inconsistent flags (exit status 2).


class PredictError(cli.DataError):
    """An input file or the model directory is not usable (exit status 1)."""


def validate(config: PredictConfig) -> None:
    """Raises UsageError naming the flag at fault."""
    if (config.video is None) == (config.images is None):
        raise UsageError("give exactly one of --video and --images")
    if os.path.splitext(config.output)[1].lower() not in (".json", ".npz"):
        raise UsageError(f"--output={config.output}: expected a .json or .npz file name")
    if config.batch_size < 1:
        raise UsageError(f"--batch_size={config.batch_size} must be >= 1")
    if config.crop_size is not None and config.crop_size < 8:
        raise UsageError(f"--crop_size={config.crop_size} must be >= 8")
    if not 0 <= config.jpeg_quality <= 100:
        raise UsageError(f"--jpeg_quality={config.jpeg_quality} must lie in 0..100")
    if config.box_smoothing < 1:
        raise UsageError(f"--box_smoothing={config.box_smoothing} must be >= 1")


# ----------------------------------------------------------------------------- the model

@dataclasses.dataclass
class PoseModel:
    """Raw uint8 crops ``[N, S, S, 3]`` -> joints ``[N, 17, 3]`` mm, from either source."""

    path: str
    kind: str                  # "saved_model" or "run"
    crop_size: Optional[int]   # stored crop side of its training data, if known
    dct_method: str
    fn: Callable[[np.ndarray], np.ndarray]

    def __call__(self, crops_uint8: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(crops_uint8), np.float32)


def load_model(path: str) -> PoseModel:
    """Loads an export version directory or a finished fine-tuning run.

    Raises:
      PredictError: neither, or an encoder export (no joints).
    """
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        meta_path = os.path.join(path, serving.METADATA_FILE)
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise PredictError(f"--model={path}: {meta_path} is missing or not JSON ({e}); "
                               f"expected a directory written by tf_synchro.export") from None
        if meta.get("what") != "pose":
            raise PredictError(f"--model={path} is an export of the {meta.get('what')!r}, "
                               f"not the pose model (export with --what=pose)")
        serve = tf.saved_model.load(path).signatures["serving_default"]
        return PoseModel(path, "saved_model", meta.get("crop_size"),
                         meta["model"]["preprocess"]["dct_method"],
                         lambda x: serve(images=tf.constant(x))["joints3d"].numpy())
    if os.path.exists(run_dir.config_path(path)):
        try:
            model, config = run_dir.load_pose_run(path)
        except run_dir.UnfinishedModelDirError as e:
            raise PredictError(str(e)) from None
        cfg = config["model"]
        size, scale = int(cfg["input_size"]), float(cfg["preprocess"]["crop_scale"])
        call = tf.function(lambda x: model(frames.preprocess_images(x, size, scale),
                                           training=False))
        return PoseModel(path, "run", serving.training_crop_size(config),
                         cfg["preprocess"]["dct_method"], lambda x: call(x).numpy())
    raise PredictError(f"--model={path}: expected an export version directory (with "
                       f"saved_model.pb) or a finished fine-tuning run (with config.json)")


# ----------------------------------------------------------------------------- inputs

@dataclasses.dataclass
class Source:
    """Frames of a video or of an image list, read lazily in order."""

    path: str
    kind: str                          # "video" or "images"
    names: list                        # per frame: image file name or "frame_000123"
    sizes: list                        # per frame: (width, height)
    fps: float = 0.0

    def __len__(self) -> int:
        return len(self.names)

    def frames(self) -> Iterator[np.ndarray]:
        """RGB uint8 frames ``[H, W, 3]``."""
        if self.kind == "video":
            with video.FrameReader(self.path) as reader:
                for i in range(len(self)):
                    yield reader.read(i)
        else:
            for name in self.names:
                yield read_image(name)


def read_image(path: str) -> np.ndarray:
    """RGB uint8 image. Raises PredictError if unreadable."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise PredictError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def open_video(path: str) -> Source:
    """Source of every decodable frame of a video.

    Raises:
      PredictError: missing, unreadable, or no decodable frame.
    """
    try:
        info = video.probe(path)
        # The container's count may be approximate; the crops must match frame numbers.
        count = video.count_frames(path)
    except video.VideoError as e:
        raise PredictError(f"--video: {e}") from None
    _check_frame_size(f"--video={path}", info.width, info.height)
    return Source(path, "video", [f"frame_{i:06d}" for i in range(count)],
                  [(info.width, info.height)] * count, info.fps)


def open_images(pattern: str) -> Source:
    """Source of a folder's images (sorted by name) or of the files a glob matches.

    Raises:
      PredictError: nothing matches, or an image is unreadable.
    """
    if os.path.isdir(pattern):
        paths = [os.path.join(pattern, n) for n in sorted(os.listdir(pattern))]
        where = f"folder {pattern}"
    else:
        paths = sorted(glob.glob(pattern))
        where = f"pattern {pattern!r}"
    paths = [p for p in paths if os.path.isfile(p)
             and os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS]
    if not paths:
        raise PredictError(f"--images: {where} holds no image file "
                           f"({', '.join(IMAGE_EXTENSIONS)})")
    sizes = []
    for p in paths:  # Headers only would need another library; decode once up front.
        h, w = read_image(p).shape[:2]
        _check_frame_size(p, w, h)
        sizes.append((w, h))
    return Source(pattern, "images", paths, sizes)


def _check_frame_size(what: str, width: int, height: int) -> None:
    # A frame of a pixel or two has no person to crop (and a 1x1 frame a zero-sized box).
    if min(width, height) < MIN_FRAME_SIDE:
        raise PredictError(f"{what}: the image is {width}x{height} pixels; expected at least "
                           f"{MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}")


def load_boxes(path: str, num_frames: int, sizes: Optional[Sequence] = None) -> np.ndarray:
    """Boxes ``[num_frames, 4]`` (x0, y0, x1, y1) from a JSON or CSV file.

    JSON: a list of ``[x0, y0, x1, y1]`` (or ``{"boxes": [...]}``). CSV: one row of four
    numbers per frame, an optional header row first.

    ``sizes`` (per frame ``(width, height)``), when given, must hold each box at least
    partly (a box wholly outside its frame would crop only padding).

    Raises:
      PredictError: unreadable, wrong count, a box that is not x1 > x0, y1 > y0, or one
        outside its frame.
    """
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise PredictError(f"--boxes={path}: cannot be read ({e.strerror})") from None
    if path.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PredictError(f"--boxes={path}: not valid JSON ({e})") from None
        rows = data.get("boxes") if isinstance(data, dict) else data
    else:
        rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
        if rows and not _is_number(rows[0][0]):
            rows = rows[1:]  # Header.
    try:
        boxes = np.asarray(rows, np.float64)
    except (TypeError, ValueError):
        boxes = np.zeros((0,))
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise PredictError(f"--boxes={path}: expected one row [x0, y0, x1, y1] of four numbers "
                           f"per frame (JSON list or CSV)")
    if len(boxes) != num_frames:
        raise PredictError(f"--boxes={path} has {len(boxes)} boxes for {num_frames} frames; "
                           f"expected one per frame")
    bad = np.flatnonzero(~(np.isfinite(boxes).all(1) & (boxes[:, 2] > boxes[:, 0])
                           & (boxes[:, 3] > boxes[:, 1])))
    if len(bad):
        raise PredictError(f"--boxes={path}: box {bad[0]} {boxes[bad[0]].tolist()} is not "
                           f"[x0, y0, x1, y1] with x1 > x0 and y1 > y0")
    if sizes is not None:
        wh = np.asarray(sizes, np.float64).reshape(-1, 2)
        outside = np.flatnonzero((boxes[:, 2] < 0) | (boxes[:, 3] < 0)
                                 | (boxes[:, 0] > wh[:, 0] - 1) | (boxes[:, 1] > wh[:, 1] - 1))
        if len(outside):
            i = outside[0]
            raise PredictError(f"--boxes={path}: box {i} {boxes[i].tolist()} lies entirely "
                               f"outside its {int(wh[i, 0])}x{int(wh[i, 1])} frame "
                               f"({len(outside)} such box(es))")
    return boxes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def square(boxes: np.ndarray) -> np.ndarray:
    """Square boxes of the same centre whose side is the longer side (crops are square)."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).max(1, keepdims=True)
    return np.concatenate([centre - side / 2, centre + side / 2], 1)


def whole_frame_box(width: int, height: int) -> np.ndarray:
    """Square box holding the whole frame (padded along the shorter side)."""
    side = max(width, height)
    return np.array([(width - side) / 2, (height - side) / 2, (width + side) / 2 - 1,
                     (height + side) / 2 - 1])


# ----------------------------------------------------------------------------- boxes

def background_boxes(source: Source, config: PredictConfig) -> list:
    """Per frame: the person box found by background subtraction, or None.

    Videos go through the rig converter's own analysis (:func:`tfrecords_tools.rig`: median
    background refined without the person, foreground mask, box). Image lists use the same
    mask and box functions (:mod:`tfrecords_tools.video`) on their median image; they need
    one image size and at least 3 images for a median.
    """
    rig_config = rig.RigConfig(input_dir=source.path, margin=config.margin,
                               mask_threshold=config.mask_threshold)
    if source.kind == "video":
        w, h = source.sizes[0]
        info = video.VideoInfo(source.path, w, h, len(source), source.fps)
        boxes, _, _ = rig._analyse_view(rig_config, source.path, info, np.arange(len(source)),
                                        None, 0, len(source))
        return boxes
    if len(set(source.sizes)) > 1 or len(source) < 3:
        return [None] * len(source)
    picks = video.sample_indices(len(source), rig_config.background_samples)
    background = video.masked_median(np.stack([read_image(source.names[i]) for i in picks]))
    return [video.person_box(video.foreground_mask(frame, background, config.mask_threshold),
                             config.margin) for frame in source.frames()]


def person_boxes(source: Source, config: PredictConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """Square boxes ``[N, 4]``, person-found flags ``[N]`` and where the boxes came from."""
    if config.boxes:
        boxes = load_boxes(config.boxes, len(source), source.sizes)
        return square(boxes), np.ones(len(source), bool), "file"
    found = background_boxes(source, config) if config.static_camera else [None] * len(source)
    flags = np.array([b is not None for b in found])
    if flags.any():
        window = config.box_smoothing if source.kind == "video" else 1
        return video.fill_and_smooth_boxes(found, window), flags, "background"
    why = ("no person stands out from the median background" if config.static_camera
           else "--nostatic_camera")
    log.warning("%s: %s; using the whole frame as the person box (give --boxes for better "
                "crops)", source.path, why)
    return np.stack([whole_frame_box(w, h) for w, h in source.sizes]), flags, "whole_frame"


# ----------------------------------------------------------------------------- crops

def make_crop(frame: np.ndarray, box: np.ndarray, size: int, jpeg_quality: int,
              dct_method: str) -> np.ndarray:
    """The stored-crop pixels of ``box``, as a converter writes and a pipeline reads them."""
    crop = crops.crop_image(frame, box, size)
    if not jpeg_quality:
        return crop
    return frames.decode_jpeg(video.encode_jpeg(crop, jpeg_quality), dct_method).numpy()


class _Progress:
    """Frames done, rate and ETA on stderr (one line redrawn on a terminal)."""

    def __init__(self, total: int, stream=None):
        self.total, self.stream, self.start = total, stream or sys.stderr, time.time()
        self._last = 0.0

    def update(self, done: int) -> None:
        now = time.time()
        if done < self.total and now - self._last < 1.0:
            return
        self._last = now
        rate = done / max(now - self.start, 1e-6)
        frac = done / max(self.total, 1)
        bar = "=" * int(30 * frac) + "." * (30 - int(30 * frac))
        end = "\n" if done >= self.total or not self.stream.isatty() else "\r"
        self.stream.write(f"frame {done}/{self.total} [{bar}] {rate:.1f} frames/s "
                          f"ETA {(self.total - done) / max(rate, 1e-6):.0f}s{end}")
        self.stream.flush()


def predict_source(model: PoseModel, source: Source, boxes: np.ndarray, crop_size: int,
                   config: PredictConfig, on_frame: Optional[Callable] = None,
                   progress: bool = True) -> np.ndarray:
    """Joints ``[N, 17, 3]`` (mm) of every frame of ``source`` inside ``boxes``.

    ``on_frame(index, frame, joints)`` is called per frame (the overlay writer).
    """
    bar = _Progress(len(source)) if progress and len(source) > config.batch_size else None
    out, batch, held = [], [], []

    def flush():
        joints = model(np.stack(batch))
        for (i, frame), j in zip(held, joints):
            if on_frame:
                on_frame(i, frame, j)
        out.append(joints)
        batch.clear()
        held.clear()
        if bar:
            bar.update(sum(len(o) for o in out))

    for i, frame in enumerate(source.frames()):
        batch.append(make_crop(frame, boxes[i], crop_size, config.jpeg_quality,
                               model.dct_method))
        held.append((i, frame if on_frame else None))
        if len(batch) == config.batch_size:
            flush()
    if batch:
        flush()
    return np.concatenate(out)


# ----------------------------------------------------------------------------- outputs

def draw_overlay(frame: np.ndarray, box: np.ndarray, joints: np.ndarray,
                 found: bool) -> np.ndarray:
    """RGB frame with the box (green: person found, orange: not) and the predicted
    skeleton's front view (x, y) drawn in the box, 2 m of body to the box side."""
    out = frame.copy()
    colour = (0, 200, 0) if found else (255, 140, 0)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cv2.rectangle(out, (x0, y0), (x1, y1), colour, 2)
    side = box[2] - box[0]
    centre = (box[:2] + box[2:]) / 2
    uv = centre + joints[:, :2] * (side / 2000.0)
    for parent, child in skeleton.BONES:
        c = ((0, 0, 255) if child in skeleton.LEFT_JOINTS else
             (255, 0, 0) if child in skeleton.RIGHT_JOINTS else (255, 255, 255))
        a = tuple(int(round(v)) for v in uv[parent])
        b = tuple(int(round(v)) for v in uv[child])
        cv2.line(out, a, b, c, 2)
    return out


class OverlayWriter:
    """Writes overlay frames to an .mp4 (renamed into place on close) or PNGs in a folder."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps = path, fps or 25.0
        self.to_video = path.lower().endswith(".mp4")
        self._tmp = f"{path}.tmp-{os.getpid()}.mp4"
        self._writer = None
        if not self.to_video:
            os.makedirs(path, exist_ok=True)

    def write(self, index: int, name: str, frame_rgb: np.ndarray) -> None:
        bgr = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
        if not self.to_video:
            stem = os.path.splitext(os.path.basename(name))[0]
            tmp = os.path.join(self.path, f".tmp-{stem}.png")
            cv2.imwrite(tmp, bgr)
            os.replace(tmp, os.path.join(self.path, f"{index:06d}_{stem}.png"))
            return
        if self._writer is None:
            h, w = bgr.shape[:2]
            self._size = (w, h)
            self._writer = cv2.VideoWriter(self._tmp, cv2.VideoWriter_fourcc(*"mp4v"),
                                           self.fps, self._size)
            if not self._writer.isOpened():
                raise PredictError(f"--overlay={self.path}: OpenCV cannot write an mp4 there")
        if (bgr.shape[1], bgr.shape[0]) != self._size:  # Images of several sizes.
            bgr = cv2.resize(bgr, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(bgr)

    def close(self, ok: bool) -> None:
        if self._writer is not None:
            self._writer.release()
            if ok:
                os.replace(self._tmp, self.path)
        if os.path.exists(self._tmp):
            os.remove(self._tmp)


def write_output(path: str, result: dict) -> None:
    """Writes the result as JSON (one entry per frame) or NPZ (arrays), atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.lower().endswith(".npz"):
        tmp = f"{path}.tmp-{os.getpid()}.npz"
        np.savez(tmp, joints3d=result["joints3d"], boxes=result["boxes"],
                 person_found=result["person_found"], names=np.asarray(result["names"]),
                 joint_names=np.asarray(skeleton.JOINT_NAMES))
        os.replace(tmp, path)
        return
    doc = {k: v for k, v in result.items()
           if k not in ("joints3d", "boxes", "person_found", "names")}
    doc["frames"] = [{"index": i, "name": n, "box": [round(float(v), 2) for v in b],
                      "person_found": bool(f),
                      "joints3d": np.round(j.astype(np.float64), 2).tolist()}
                     for i, (n, b, f, j) in enumerate(zip(result["names"], result["boxes"],
                                                          result["person_found"],
                                                          result["joints3d"]))]
    dataset_io.write_json_atomic(path, doc)


# ----------------------------------------------------------------------------- the run

def run(config: PredictConfig, progress: bool = True) -> dict:
    """Predicts every frame of ``config.video`` / ``config.images`` and writes the outputs.

    Returns:
      ``{"joints3d": [N, 17, 3] mm, "boxes": [N, 4], "person_found": [N] bool,
      "names": [N], "box_source", "crop_size", "joint_names", ...}``.

    Raises:
      UsageError: inconsistent settings.
      PredictError: unreadable inputs, bad box file, bad model directory.
    """
    validate(config)
    source = open_video(config.video) if config.video else open_images(config.images)
    if config.boxes:  # Checked before the (slow) model load and background analysis.
        load_boxes(config.boxes, len(source), source.sizes)
    model = load_model(config.model)
    crop_size = config.crop_size or model.crop_size
    if crop_size is None:
        log.warning("%s does not say the crop side it was trained on; using %d (pass "
                    "--crop_size)", config.model, DEFAULT_CROP_SIZE)
        crop_size = DEFAULT_CROP_SIZE
    boxes, found, box_source = person_boxes(source, config)
    overlay = OverlayWriter(config.overlay, source.fps) if config.overlay else None
    on_frame = None
    if overlay:
        on_frame = lambda i, frame, joints: overlay.write(
            i, source.names[i], draw_overlay(frame, boxes[i], joints, found[i]))
    ok = False
    try:
        joints = predict_source(model, source, boxes, int(crop_size), config, on_frame,
                                progress)
        ok = True
    except video.VideoError as e:
        raise PredictError(f"--video: {e}") from None
    finally:
        if overlay:
            overlay.close(ok)
    result = {
        "model": config.model, "source": config.video or config.images, "units": "mm",
        "coordinates": COORDINATES, "joint_names": list(skeleton.JOINT_NAMES),
        "box_source": box_source, "crop_size": int(crop_size),
        "jpeg_quality": config.jpeg_quality, "num_frames": len(source),
        "num_frames_without_person": int((~found).sum()),
        "joints3d": joints, "boxes": boxes, "person_found": found,
        "names": [os.path.basename(n) if source.kind == "images" else n
                  for n in source.names],
    }
    write_output(config.output, result)
    return result
