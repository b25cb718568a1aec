"""Inference on your own video or images: 3D joints per frame (the predict binary).

``--model`` is an exported version directory (``tf_synchro.export``), its ``.onnx`` or
``.tflite`` file, or a finished fine-tuning run directory (:mod:`tf_synchro.deploy.artefacts`).
The frames come from :mod:`tf_synchro.deploy.sources`. The person box of each frame comes
from ``--boxes`` (one box per frame), else from a median background and a foreground mask
as the rig converter finds it (``--static_camera``, the default), else the whole frame
(with a warning): :mod:`tf_synchro.deploy.boxes`. The crop is made
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

import logging
import os
import sys
import time
from typing import Callable, Optional

import numpy as np

from tf_synchro.configs import PredictConfig
from tf_synchro.data import frames
from tf_synchro.deploy import artefacts, overlay, sources
from tf_synchro.deploy import boxes as boxes_lib
from tf_synchro.deploy.sources import PredictError, Source
from tfrecords_tools import crops, skeleton, video
from tfrecords_tools.runtime import cli
from tfrecords_tools.runtime import progress as progress_lib

log = logging.getLogger(__name__)

DEFAULT_CROP_SIZE = 160  # The converters' default stored crop side.
COORDINATES = "camera frame, root-relative (pelvis = 0): x right, y down, z forward; mm"


UsageError = cli.UsageError  # Inconsistent flags (exit status 2).


def validate(config: PredictConfig) -> None:
    """Raises UsageError naming the flag at fault."""
    if (config.video is None) == (config.images is None):
        raise UsageError("give exactly one of --video and --images")
    if os.path.splitext(config.output)[1].lower() not in (".json", ".npz"):
        raise UsageError(f"--output={config.output}: expected a .json or .npz file name")
    if os.path.isdir(config.output):
        raise UsageError(f"--output={config.output} is a directory; expected a .json or .npz "
                         f"file name")
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


# ----------------------------------------------------------------------------- crops

def make_crop(frame: np.ndarray, box: np.ndarray, size: int, jpeg_quality: int,
              dct_method: str) -> np.ndarray:
    """The stored-crop pixels of ``box``, as a converter writes and a pipeline reads them."""
    crop = crops.crop_image(frame, box, size)
    if not jpeg_quality:
        return crop
    return frames.decode_jpeg(video.encode_jpeg(crop, jpeg_quality), dct_method).numpy()


def _frame_progress(total: int) -> Callable[[int], None]:
    """Frames done, rate and ETA on stderr, at most once a second and at the end."""
    start, last = time.time(), [0.0]

    def update(done: int) -> None:
        now = time.time()
        if done < total and now - last[0] < 1.0:
            return
        last[0] = now
        rate = done / max(now - start, 1e-6)
        progress_lib.draw(sys.stderr, "frame", done, total, f"{rate:.1f} frames/s",
                          (total - done) / max(rate, 1e-6))
    return update


def predict_source(model: PoseModel, source: Source, boxes: np.ndarray, crop_size: int,
                   config: PredictConfig, on_frame: Optional[Callable] = None,
                   progress: bool = True) -> np.ndarray:
    """Joints ``[N, 17, 3]`` (mm) of every frame of ``source`` inside ``boxes``.

    ``on_frame(index, frame, joints)`` is called per frame (the overlay writer).
    """
    big = progress and len(source) > config.batch_size
    bar = _frame_progress(len(source)) if big else None
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
            bar(sum(len(o) for o in out))

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
    source = (sources.open_video(config.video) if config.video
              else sources.open_images(config.images))
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
        boxes_lib.load_boxes(config.boxes, len(source), source.sizes)
    model = load_model(config.model)
    crop_size = config.crop_size or model.crop_size
    if crop_size is None:
        log.warning("%s does not say the crop side it was trained on; using %d (pass "
                    "--crop_size)", config.model, DEFAULT_CROP_SIZE)
        crop_size = DEFAULT_CROP_SIZE
    boxes, found, box_source = boxes_lib.person_boxes(source, config)
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
