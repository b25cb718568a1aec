"""Inference on your own video or images: 3D joints per frame (the predict binary).

``--model`` is an exported version directory (``tf_synchro.export``), its ``.onnx`` or
``.tflite`` file, or a finished fine-tuning run directory (:mod:`tf_synchro.deploy.artefacts`).
The person box of each frame comes from ``--boxes`` (one box per frame), else from a
median background and a foreground mask as the rig converter finds it (``--static_camera``,
the default), else the whole frame (with a warning). The crop is made
exactly as the training data was: the square box resampled to the stored crop side
(:func:`tfrecords_tools.crops.crop_image`), JPEG-compressed at the converters' quality and
decoded (:func:`tf_synchro.data.frames.decode_jpeg`), then the evaluation preprocessing
(:func:`tf_synchro.data.frames.preprocess_images`). So a frame converted into a dataset and
evaluated gets the very joints this binary prints.

Output: root-relative 3D joints in mm in the camera frame (x right, y down, z forward;
root = pelvis) per frame, in :data:`tfrecords_tools.skeleton.JOINT_NAMES` order, with the
square box used and whether a person was found there; ``--smooth`` filters the joints
over time, ``--overlay`` draws them on the person (both: :mod:`tf_synchro.deploy.overlay`, which
also writes the output files). Exit status 2: bad flags; 1: bad
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

from tf_synchro.configs import PredictConfig
from tf_synchro.data import frames
from tf_synchro.deploy import artefacts, overlay
from tfrecords_tools import person_boxes as boxes_lib
from tfrecords_tools import crops, skeleton, video
from tfrecords_tools.runtime import cli

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

PoseModel = artefacts.PoseModel  # Raw uint8 crops -> joints mm, from any model kind.


def load_model(path: str) -> PoseModel:
    """Loads an export version directory, its .onnx / .tflite, or a finished run.

    Raises:
      PredictError: none of these, or an encoder export (no joints).
    """
    try:
        return artefacts.load(path, "--model")
    except artefacts.ArtefactError as e:
        raise PredictError(str(e)) from None


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

class _Frames:
    """A Source as a :class:`tfrecords_tools.person_boxes.FrameSource` (read twice: the
    background samples, then every frame)."""

    def __init__(self, source: Source):
        self.source, self.num_frames = source, len(source)
        self.width, self.height = source.sizes[0]

    def frames(self, indices=None) -> Iterator[np.ndarray]:
        if indices is None:
            yield from self.source.frames()
        elif self.source.kind == "video":
            with video.FrameReader(self.source.path) as reader:
                for i in indices:
                    yield reader.read(int(i))
        else:
            for i in indices:
                yield read_image(self.source.names[int(i)])


def background_boxes(source: Source, config: PredictConfig
                     ) -> Optional[boxes_lib.BoxResult]:
    """The person boxes of :mod:`tfrecords_tools.person_boxes` (as the rig converter finds
    them: median background refined without the person, one tracked person, short
    dropouts held), or None for an image list without one image size or with fewer than 3
    images (no median)."""
    if source.kind == "images" and (len(set(source.sizes)) > 1 or len(source) < 3):
        return None
    box_config = boxes_lib.BoxConfig(
        threshold=config.mask_threshold, margin=config.margin,
        smoothing=config.box_smoothing if source.kind == "video" else 1)
    return boxes_lib.find_boxes([_Frames(source)], box_config, name=source.path)


def person_boxes(source: Source, config: PredictConfig
                    ) -> tuple[np.ndarray, np.ndarray, str]:
    """Square boxes ``[N, 4]``, person-found flags ``[N]`` and where the boxes came from."""
    if config.boxes:
        boxes = load_boxes(config.boxes, len(source), source.sizes)
        return square(boxes), np.ones(len(source), bool), "file"
    result = background_boxes(source, config) if config.static_camera else None
    flags = np.zeros(len(source), bool) if result is None else result.found[0]
    if flags.any():
        return result.boxes[0], flags, "background"
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


# ----------------------------------------------------------------------------- the run

def run(config: PredictConfig, progress: bool = True) -> dict:
    """Predicts every frame of ``config.video`` / ``config.images`` and writes the outputs.

    Returns:
      ``{"joints3d": [N, 17, 3] mm, "boxes": [N, 4], "person_found": [N] bool,
      "names": [N], "box_source", "crop_size", "joint_names", ...}`` (with ``--smooth``,
      ``joints3d`` is filtered and ``joints3d_raw`` holds the per-frame predictions).

    Raises:
      UsageError: inconsistent settings.
      PredictError: unreadable inputs, bad box file, bad model directory.
    """
    validate(config)
    if config.smooth and not config.video:
        raise UsageError("--smooth needs --video (the filter runs at the video's frame rate)")
    source = open_video(config.video) if config.video else open_images(config.images)
    intrinsics = None
    if config.intrinsics:
        camera = os.path.splitext(os.path.basename(source.path))[0]
        intrinsics = overlay.read_intrinsics(config.intrinsics, camera)
    smoother = None
    if config.smooth:
        try:
            smoother = overlay.OneEuroFilter(source.fps or 25.0, config.smooth_min_cutoff,
                                             config.smooth_beta, config.smooth_d_cutoff)
        except ValueError as e:
            raise UsageError(f"--smooth_min_cutoff, --smooth_beta, --smooth_d_cutoff: {e}"
                             ) from None
    if config.boxes:  # Checked before the (slow) model load and background analysis.
        load_boxes(config.boxes, len(source), source.sizes)
    model = load_model(config.model)
    crop_size = config.crop_size or model.crop_size
    if crop_size is None:
        log.warning("%s does not say the crop side it was trained on; using %d (pass "
                    "--crop_size)", config.model, DEFAULT_CROP_SIZE)
        crop_size = DEFAULT_CROP_SIZE
    boxes, found, box_source = person_boxes(source, config)
    writer = overlay.OverlayWriter(config.overlay, source.fps) if config.overlay else None
    smoothed = []

    def on_frame(i, frame, joints):
        # Frames arrive in order, so the causal filter runs online, before drawing.
        if smoother:
            joints = smoother(joints).astype(np.float32)
            smoothed.append(joints)
        if writer:
            writer.write(i, source.names[i], overlay.draw_overlay(
                frame, boxes[i], joints, found[i], config.margin, intrinsics))

    ok = False
    try:
        joints = predict_source(model, source, boxes, int(crop_size), config,
                                on_frame if (writer or smoother) else None, progress)
        ok = True
    except video.VideoError as e:
        raise PredictError(f"--video: {e}") from None
    finally:
        if writer:
            writer.close(ok)
    result = {
        "model": config.model, "model_kind": model.kind,
        "source": config.video or config.images, "units": "mm",
        "coordinates": COORDINATES, "joint_names": list(skeleton.JOINT_NAMES),
        "fps": float(source.fps), "box_source": box_source, "box_margin": config.margin,
        "crop_size": int(crop_size), "jpeg_quality": config.jpeg_quality,
        "intrinsics": None if intrinsics is None else [float(v) for v in intrinsics],
        "smoothing": ({"filter": "one_euro", "min_cutoff_hz": config.smooth_min_cutoff,
                       "beta_per_mm_per_s": config.smooth_beta,
                       "d_cutoff_hz": config.smooth_d_cutoff} if smoother else None),
        "num_frames": len(source), "num_frames_without_person": int((~found).sum()),
        "joints3d": np.stack(smoothed) if smoother else joints, "boxes": boxes,
        "person_found": found,
        "names": [os.path.basename(n) if source.kind == "images" else n
                  for n in source.names],
    }
    if smoother:
        result["joints3d_raw"] = joints
    overlay.write_output(config.output, result)
    return result
