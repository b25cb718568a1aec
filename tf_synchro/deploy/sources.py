"""The frames predict reads: a video, or a folder or glob of images, lazily and in order.

A :class:`Source` is also a :class:`tfrecords_tools.person_boxes.FrameSource`, so the
person boxes read it like the rig converter reads its videos (twice: background samples,
then every frame). Unusable input is a :class:`PredictError` (exit status 1).
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np

from tfrecords_tools import video
from tfrecords_tools.runtime import cli

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MIN_FRAME_SIDE = 8  # Smaller frames are refused (no person to crop).


class PredictError(cli.DataError):
    """An input file or the model directory is not usable (exit status 1)."""


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

    @property
    def num_frames(self) -> int:
        return len(self)

    @property
    def width(self) -> int:
        return self.sizes[0][0]

    @property
    def height(self) -> int:
        return self.sizes[0][1]

    def frames(self, indices: Optional[Sequence[int]] = None) -> Iterator[np.ndarray]:
        """RGB uint8 frames ``[H, W, 3]`` at increasing ``indices`` (None: all, in order)."""
        indices = range(len(self)) if indices is None else indices
        if self.kind == "video":
            with video.FrameReader(self.path) as reader:
                for i in indices:
                    yield reader.read(int(i))
        else:
            for i in indices:
                yield read_image(self.names[int(i)])


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
