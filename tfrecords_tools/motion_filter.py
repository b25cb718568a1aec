"""Drop frames without significant movement (Jenni & Favaro 2020, following Rhodin et al.).

Near-static stretches make unsynchronized pairs indistinguishable from synchronized
ones, so writers keep a frame only when the body moved enough since the last kept
frame. Kept frames retain their original indices, so pair offsets stay in real frames.
"""
from __future__ import annotations

import numpy as np


def _greedy_keep(distance_to, num_frames: int, threshold: float) -> np.ndarray:
    keep = np.zeros(num_frames, bool)
    if num_frames == 0:
        return keep
    keep[0] = True
    last = 0
    for t in range(1, num_frames):
        if distance_to(last, t) > threshold:
            keep[t] = True
            last = t
    return keep


def moving_frames_3d(joints: np.ndarray, threshold_mm: float) -> np.ndarray:
    """Boolean mask [T]: frame t is kept if some joint moved more than ``threshold_mm``
    (root-relative, so walking in place counts, gliding does not) since the last kept frame.

    ``threshold_mm <= 0`` keeps every frame.
    """
    joints = np.asarray(joints, np.float64)
    if threshold_mm <= 0:
        return np.ones(len(joints), bool)
    rel = joints - joints[:, :1]
    return _greedy_keep(lambda a, b: np.linalg.norm(rel[b] - rel[a], axis=-1).max(),
                        len(joints), threshold_mm)


def moving_frames_2d(frames: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask [T] for unlabelled video: frame t is kept if its mean absolute grey-level
    difference to the last kept frame (frames [T, H, W], any scale) exceeds ``threshold``."""
    frames = np.asarray(frames, np.float32)
    if threshold <= 0:
        return np.ones(len(frames), bool)
    return _greedy_keep(lambda a, b: float(np.abs(frames[b] - frames[a]).mean()),
                        len(frames), threshold)
