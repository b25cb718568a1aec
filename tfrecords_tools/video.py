"""Video reading, median backgrounds, foreground masks and crops (OpenCV).

Shared by the Human3.6M (:mod:`tfrecords_tools.h36m`) and generic rig
(:mod:`tfrecords_tools.rig`) converters. Every frame this module returns is RGB
uint8 [H, W, 3] (OpenCV decodes BGR; the conversion happens here, once), and
:func:`encode_jpeg` takes RGB, so records always hold RGB content.

No detector weights can be downloaded, so the person is found by background
subtraction: the per-camera, per-sequence *median* of frames sampled across the
sequence is the static scene (a moving person rarely covers the same pixel in
most samples), and pixels that differ from it are foreground. Person boxes are
made by :mod:`tfrecords_tools.person_boxes`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterator, Optional, Sequence

import cv2
import numpy as np

from tfrecords_tools import crops

# Removed background is painted black, the same look as the synthetic generator's.
BACKGROUND_FILL = 0

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")


class VideoError(ValueError):
    """A video file is missing, unreadable or shorter than expected."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (frame count may be approximate)."""

    path: str
    width: int
    height: int
    num_frames: int
    fps: float


def _open(path: str) -> cv2.VideoCapture:
    if os.path.isdir(path):
        raise VideoError(f"video {path} is a directory, expected a video file")
    if not os.path.isfile(path):
        raise VideoError(f"video {path} does not exist")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise VideoError(f"video {path} cannot be opened by OpenCV (corrupt or unknown codec)")
    return cap


def probe(path: str) -> VideoInfo:
    """Size, frame count and frame rate of a video; decodes its first frame to be sure.

    Raises:
      VideoError: missing, unopenable, or no decodable frame.
    """
    cap = _open(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(f"video {path} has no decodable frame (corrupt?)")
        n = int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        return VideoInfo(path, frame.shape[1], frame.shape[0], max(n, 1), fps)
    finally:
        cap.release()


class FrameReader:
    """Reads chosen frames of one video in increasing order, decoding sequentially.

    Sequential decoding is exact; container seeking in mp4 is not always frame
    accurate, and exact frame indices are what keeps views synchronized.
    """

    def __init__(self, path: str):
        self.path = path
        self._cap = _open(path)
        self._next = 0
        self._last: Optional[np.ndarray] = None

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) as RGB uint8 [H, W, 3]; the last frame read may be
        asked for again (a view resampled to a higher frame rate repeats frames).

        Raises:
          VideoError: ``index`` is behind the last frame read, or past the end.
        """
        if index == self._next - 1 and self._last is not None:
            return self._last.copy()
        if index < self._next:
            raise VideoError(f"{self.path}: frame {index} requested after frame {self._next - 1}; "
                             f"FrameReader reads forward only")
        while self._next < index:
            if not self._cap.grab():
                raise VideoError(f"{self.path}: video ends at frame {self._next}, "
                                 f"frame {index} was requested")
            self._next += 1
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise VideoError(f"{self.path}: video ends at frame {self._next}, "
                             f"frame {index} was requested")
        self._next += 1
        self._last = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        return self._last

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def count_frames(path: str) -> int:
    """Exact number of decodable frames (grabs through the whole video; predict's progress)."""
    cap = _open(path)
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n


def sample_indices(num_frames: int, num_samples: int, start: int = 0) -> np.ndarray:
    """Up to ``num_samples`` frame numbers spread evenly over ``[start, start + num_frames)``."""
    return np.unique(np.linspace(start, start + num_frames - 1,
                                 max(1, min(num_samples, num_frames))).round().astype(int))


def iter_samples(path: str, indices: Sequence[int],
                 max_grab: int = 12) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) at increasing ``indices``, skipping frames that cannot be decoded.

    Samples more than ``max_grab`` frames apart are reached by container seeking,
    which may land a frame or so off in some codecs; that does not matter for a
    background estimate and avoids decoding the whole video.
    """
    cap = _open(path)
    pos = 0  # index of the frame the next read() decodes
    try:
        for i in indices:
            i = int(i)
            if not 0 <= i - pos <= max_grab:  # Far ahead (or behind): seek.
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            else:  # Close ahead: decoding forward is cheaper than a seek.
                while pos < i and cap.grab():
                    pos += 1
            ok, frame = cap.read()
            pos = i + 1
            if ok and frame is not None:
                yield i, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def sample_frames(path: str, indices: Sequence[int],
                  max_grab: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames [N, H, W, 3] at ``indices`` and the indices actually decoded
    (see :func:`iter_samples`).

    Raises:
      VideoError: the video cannot be opened or not one sample could be decoded.
    """
    got = list(iter_samples(path, indices, max_grab))
    if not got:
        raise VideoError(f"{path}: no frame could be decoded for the median background")
    return np.stack([f for _, f in got]), np.asarray([i for i, _ in got])


@dataclasses.dataclass(frozen=True)
class VideoFrames:
    """Chosen frames of a video, readable again and again without holding them (a
    :class:`tfrecords_tools.person_boxes.FrameSource`): position i is video frame
    ``frame_numbers[i]``."""

    path: str
    frame_numbers: tuple
    width: int
    height: int

    @property
    def num_frames(self) -> int:
        return len(self.frame_numbers)

    def frames(self, indices: Optional[Sequence[int]] = None) -> Iterator[np.ndarray]:
        """Every chosen frame in order (exact sequential decoding), or the positions
        ``indices`` (sparse samples: seeking, undecodable ones skipped)."""
        if indices is None:
            with FrameReader(self.path) as reader:
                for i in self.frame_numbers:
                    yield reader.read(int(i))
            return
        for _, frame in iter_samples(self.path, [self.frame_numbers[int(k)] for k in indices]):
            yield frame


def masked_median(frames: np.ndarray, exclude_boxes: Optional[np.ndarray] = None,
                  rows_per_chunk: int = 64,
                  exclude_masks: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-pixel median of ``frames`` [N, H, W, 3], ignoring where each frame shows a person.

    Args:
      frames: RGB uint8 samples.
      exclude_boxes: [N, 4] boxes (x0, y0, x1, y1) where the person is in each sample
        (NaN rows exclude nothing). Pixels covered in *every* sample fall back to the
        plain median: without another look at them, that is the best estimate.
      exclude_masks: bool [N, H, W], True where a sample shows a person (with or
        instead of ``exclude_boxes``).

    Returns:
      RGB uint8 [H, W, 3].
    """
    plain = np.median(frames, axis=0)
    if exclude_boxes is None and exclude_masks is None:
        return plain.astype(np.uint8)
    n, h, w, _ = frames.shape
    valid = np.ones((n, h, w), bool) if exclude_masks is None else ~np.asarray(exclude_masks)
    for i, box in enumerate(np.asarray(exclude_boxes if exclude_boxes is not None
                                       else np.zeros((0, 4)), np.float64)):
        if np.all(np.isfinite(box)):
            x0, y0 = (max(0, int(np.floor(v))) for v in box[:2])
            x1, y1 = int(np.ceil(box[2])) + 1, int(np.ceil(box[3])) + 1
            valid[i, y0:y1, x0:x1] = False
    out = plain.copy()
    for r in range(0, h, rows_per_chunk):  # Chunks keep the uint16 copy small for 1000 px.
        ok = valid[:, r:r + rows_per_chunk]
        # Excluded samples become 256, which sorts after every real value: the median
        # of the k valid samples is then the mean of sorted entries (k-1)//2 and k//2.
        block = frames[:, r:r + rows_per_chunk].astype(np.uint16)
        block[~ok] = 256
        block.sort(axis=0)
        k = ok.sum(0)
        lo = np.take_along_axis(block, np.maximum(k - 1, 0)[None, ..., None] // 2, 0)[0]
        hi = np.take_along_axis(block, (k // 2)[None, ..., None], 0)[0]
        seen = k > 0
        out[r:r + rows_per_chunk][seen] = (lo[seen] + hi[seen]) / 2.0
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def median_background(path: str, num_frames: int, num_samples: int = 40, start: int = 0,
                      exclude_boxes: Optional[np.ndarray] = None) -> np.ndarray:
    """Static scene of a video: median of frames sampled over ``[start, start + num_frames)``.

    Args:
      exclude_boxes: optional [num_frames, 4] person box per frame (index 0 = ``start``);
        each sample ignores its box, so a person who moves little does not end up
        painted into the background.

    Returns:
      RGB uint8 [H, W, 3].
    """
    frames, got = sample_frames(path, sample_indices(num_frames, num_samples, start))
    boxes = None if exclude_boxes is None else np.asarray(exclude_boxes)[got - start]
    return masked_median(frames, boxes)


def foreground_mask(image: np.ndarray, background: np.ndarray, threshold: float = 30.0,
                    kernel: int = 3) -> np.ndarray:
    """Boolean mask [H, W] of pixels that differ from ``background``.

    A pixel is foreground if any colour channel differs by more than ``threshold``
    (grey levels); a morphological opening removes isolated noise (compression
    artefacts), a closing fills small holes inside the person.
    """
    diff = np.abs(image.astype(np.int16) - background.astype(np.int16)).max(axis=-1)
    mask = (diff > threshold).astype(np.uint8)
    if kernel > 1:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, k)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, k)
    return mask.astype(bool)


def remove_background(crop: np.ndarray, background_crop: np.ndarray, threshold: float = 30.0,
                      kernel: int = 3, fill: int = BACKGROUND_FILL) -> np.ndarray:
    """``crop`` with every pixel that matches ``background_crop`` set to ``fill``.

    Both crops must come from the same box, so pixels outside the original frame
    (padded identically in both) count as background too.
    """
    mask = foreground_mask(crop, background_crop, threshold, kernel)
    # Dilate once so the person's outline (blended with the background by
    # resampling and compression) is kept rather than eaten away.
    mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    out = crop.copy()
    out[~mask] = fill
    return out


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB uint8 image (decoders, e.g. ``tf.io.decode_jpeg``, give RGB back)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {rgb.shape}")
    return buf.tobytes()


def crop_jpeg(frame: np.ndarray, box: np.ndarray, size: int, *,
              background: Optional[np.ndarray] = None, quality: int = 90,
              mask_threshold: float = 30.0, keep: Optional[np.ndarray] = None) -> bytes:
    """Square crop of ``frame`` along ``box`` as JPEG; background removed if one is given
    (or, with ``keep``, a bool [size, size] mask of the crop pixels to keep)."""
    crop = crops.crop_image(frame, box, size)
    if keep is not None:
        crop[~keep] = BACKGROUND_FILL
    elif background is not None:
        crop = remove_background(crop, crops.crop_image(background, box, size),
                                 threshold=mask_threshold)
    return encode_jpeg(crop, quality)


def crop_timesteps(paths: Sequence[str], frame_indices: np.ndarray, boxes: np.ndarray,
                   size: int, *, backgrounds: Optional[Sequence[np.ndarray]] = None,
                   quality: int = 90, mask_threshold: float = 30.0,
                   keep: Optional[Callable[[int, int, np.ndarray, int], np.ndarray]] = None
                   ) -> Iterator[list]:
    """Yields, per timestep k, the V JPEG crops of video frames ``frame_indices[k]``.

    All videos are decoded forward in lockstep, so memory holds one frame per view.

    Args:
      paths: V video files.
      frame_indices: [K, V] non-decreasing frame numbers in each video.
      boxes: [K, V, 4] crop boxes in each video's pixels.
      size: crop side.
      backgrounds: V median backgrounds to remove, or None to keep the scene.
      keep: ``keep(k, v, box, size)`` -> bool [size, size] crop pixels to keep (the
        person-box module's keep mask); removes the background instead of ``backgrounds``.

    Raises:
      VideoError: a video ends before a requested frame (what was yielded is valid).
    """
    readers = [FrameReader(p) for p in paths]
    try:
        for k in range(len(frame_indices)):
            yield [crop_jpeg(r.read(int(frame_indices[k, v])), boxes[k, v], size,
                             background=None if backgrounds is None else backgrounds[v],
                             quality=quality, mask_threshold=mask_threshold,
                             keep=None if keep is None else keep(k, v, boxes[k, v], size))
                   for v, r in enumerate(readers)]
    finally:
        for r in readers:
            r.close()


def clip_chunks(timesteps: Iterator[list], clip_length: int) -> Iterator[tuple[int, list]]:
    """Groups per-timestep crops into (start, [up to clip_length timesteps]) chunks.

    If ``timesteps`` raises :class:`VideoError` (a video ended early), the partial
    chunk read so far is yielded first, then the error is re-raised to the caller.
    """
    start, buf = 0, []
    try:
        for images in timesteps:
            buf.append(images)
            if len(buf) == clip_length:
                yield start, buf
                start, buf = start + len(buf), []
    except VideoError:
        if buf:
            yield start, buf
        raise
    if buf:
        yield start, buf


def find_videos(directory: str) -> dict[str, str]:
    """{file stem: path} of the video files directly inside ``directory``."""
    out = {}
    for name in sorted(os.listdir(directory)):
        stem, ext = os.path.splitext(name)
        if ext.lower() in VIDEO_EXTENSIONS and os.path.isfile(os.path.join(directory, name)):
            if stem in out:
                raise VideoError(f"{directory}: two videos for {stem!r} "
                                 f"({os.path.basename(out[stem])}, {name}); keep one")
            out[stem] = os.path.join(directory, name)
    return out
