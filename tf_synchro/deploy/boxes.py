"""Predict's person box per frame: the ``--boxes`` file, else
:mod:`tfrecords_tools.person_boxes` on the frames (``--static_camera``), else the whole
frame (with a warning). Every box is made square by :func:`tfrecords_tools.crops.square_box`
(crops are square); the only box code here reads the ``--boxes`` file.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from typing import Optional, Sequence

import numpy as np

from tf_synchro.configs import PredictConfig
from tf_synchro.deploy.sources import PredictError, Source
from tfrecords_tools import crops
from tfrecords_tools import person_boxes as boxes_lib

log = logging.getLogger(__name__)


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


def _square(corners: np.ndarray) -> np.ndarray:
    """The square box of the same centre whose side is the longer side of the box with
    corners ``[[x0, y0], [x1, y1]]``."""
    return crops.square_box(corners, margin=0.0, min_side=0.0)


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
    return boxes_lib.find_boxes([source], box_config, name=source.path)


def person_boxes(source: Source, config: PredictConfig
                 ) -> tuple[np.ndarray, np.ndarray, str]:
    """Square boxes ``[N, 4]``, person-found flags ``[N]`` and where the boxes came from
    (``file``, ``background`` or ``whole_frame``)."""
    if config.boxes:
        boxes = load_boxes(config.boxes, len(source), source.sizes)
        return (np.stack([_square(b.reshape(2, 2)) for b in boxes]),
                np.ones(len(source), bool), "file")
    result = background_boxes(source, config) if config.static_camera else None
    flags = np.zeros(len(source), bool) if result is None else result.found[0]
    if flags.any():
        return result.boxes[0], flags, "background"
    why = ("no person stands out from the median background" if config.static_camera
           else "--nostatic_camera")
    log.warning("%s: %s; using the whole frame as the person box (give --boxes for better "
                "crops)", source.path, why)
    # The square holding the whole frame, padded along the shorter side.
    return (np.stack([_square(np.array([[0.0, 0.0], [w - 1.0, h - 1.0]]))
                      for w, h in source.sizes]), flags, "whole_frame")
