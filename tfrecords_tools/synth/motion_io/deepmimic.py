"""DeepMimic motion files (the humanoid clips pybullet ships in ``pybullet_data``).

A DeepMimic motion file is JSON: ``{"Loop": "wrap" | "none", "Frames": [[...], ...]}``,
one row of 44 numbers per keyframe, Y up, metres, quaternions ``w, x, y, z``:

====  =====================================================================
0     duration of this keyframe (seconds until the next one; 0 on the last)
1-3   root (pelvis) position
4-7   root rotation
8-11  chest, 12-15 neck, 16-19 right hip (quaternions, relative to the parent)
20    right knee (radians about the joint's z axis)
21-24 right ankle, 25-28 right shoulder
29    right elbow (radians about z)
30-33 left hip, 34 left knee, 35-38 left ankle, 39-42 left shoulder, 43 left elbow
====  =====================================================================

(pybullet's ``pybullet_envs/deep_mimic/env/humanoid_pose_interpolator.py`` reads the rows
in this order.) Positions come from forward kinematics over the humanoid of
``pybullet_data/humanoid/humanoid.urdf`` loaded at ``globalScaling=0.25`` (as pybullet's
DeepMimic environment does): :data:`SKELETON` holds its joint offsets in metres, in the
parent's frame (x forward, y up, z to the character's right). The head is not a joint:
its centre and top are the neck link's sphere (centre 0.175 m above the neck joint,
radius 0.1025 m). The names map to the 17 joints by
:data:`tfrecords_tools.synth.motion_io.mapping.DEEPMIMIC`.

``"Loop": "wrap"`` marks a cyclic clip (:attr:`RawMotion.cyclic`). Keyframes may have
unequal durations; they are interpolated linearly onto a uniform grid
at the clip's most common keyframe rate.
"""
from __future__ import annotations

import json
from typing import Dict, Tuple

import numpy as np

from tfrecords_tools.synth.motion_io.source import RawMotion, fail

# pybullet loads humanoid.urdf at this scale for DeepMimic; the offsets below are scaled.
_S = 0.25

# name -> (parent, offset in the parent's frame [m], row slice of its rotation or None).
# Quaternion rows are 4 wide (w, x, y, z); the knees and elbows are one angle about z.
SKELETON: Dict[str, Tuple[str, Tuple[float, float, float], slice]] = {
    "root": ("", (0.0, 0.0, 0.0), slice(4, 8)),
    "chest": ("root", (0.0, 0.944604 * _S, 0.0), slice(8, 12)),
    "neck": ("chest", (0.0, 0.895576 * _S, 0.0), slice(12, 16)),
    "head": ("neck", (0.0, 0.700000 * _S, 0.0), None),
    "head_top": ("neck", (0.0, (0.70 + 0.41) * _S, 0.0), None),
    "right_hip": ("root", (0.0, 0.0, 0.339548 * _S), slice(16, 20)),
    "right_knee": ("right_hip", (0.0, -1.686184 * _S, 0.0), slice(20, 21)),
    "right_ankle": ("right_knee", (0.0, -1.639480 * _S, 0.0), slice(21, 25)),
    "right_shoulder": ("chest", (-0.0962 * _S, 0.974 * _S, 0.73244 * _S), slice(25, 29)),
    "right_elbow": ("right_shoulder", (0.0, -1.099152 * _S, 0.0), slice(29, 30)),
    "right_wrist": ("right_elbow", (0.0, -1.035788 * _S, 0.0), None),
    "left_hip": ("root", (0.0, 0.0, -0.339548 * _S), slice(30, 34)),
    "left_knee": ("left_hip", (0.0, -1.686184 * _S, 0.0), slice(34, 35)),
    "left_ankle": ("left_knee", (0.0, -1.639480 * _S, 0.0), slice(35, 39)),
    "left_shoulder": ("chest", (-0.0962 * _S, 0.974 * _S, -0.73244 * _S), slice(39, 43)),
    "left_elbow": ("left_shoulder", (0.0, -1.099152 * _S, 0.0), slice(43, 44)),
    "left_wrist": ("left_elbow", (0.0, -1.035788 * _S, 0.0), None),
}
ROW_LENGTH = 44


def quat_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] of quaternions [..., 4] ``w, x, y, z`` (normalised)."""
    q = np.asarray(q, np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def _z_rotation(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    o, z = np.ones_like(angle), np.zeros_like(angle)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                     np.stack([z, z, o], -1)], -2)


def forward_kinematics(frames: np.ndarray) -> np.ndarray:
    """Points [T, len(SKELETON), 3] (metres, Y up) of rows [T, 44] (the duration unused)."""
    frames = np.asarray(frames, np.float64)
    pos: Dict[str, np.ndarray] = {}
    rot: Dict[str, np.ndarray] = {}
    for name, (parent, offset, cols) in SKELETON.items():
        if cols is None:
            local = np.eye(3)
        elif cols.stop - cols.start == 1:
            local = _z_rotation(frames[:, cols.start])
        else:
            local = quat_matrix(frames[:, cols])
        if not parent:
            pos[name], rot[name] = frames[:, 1:4], local
            continue
        pos[name] = pos[parent] + rot[parent] @ np.asarray(offset)
        rot[name] = rot[parent] @ local
    return np.stack([pos[n] for n in SKELETON], 1)


def read(path: str) -> RawMotion:
    """Reads a DeepMimic motion file (see the module docstring).

    Raises:
      MotionFileError: not JSON, no ``Frames``, a row of the wrong length, a non-number,
        a zero quaternion or non-positive durations.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise fail(path, f"is not a readable DeepMimic JSON file ({type(e).__name__}: {e})") \
            from None
    if not isinstance(data, dict) or not isinstance(data.get("Frames"), list):
        raise fail(path, 'has no "Frames" list; expected a DeepMimic motion file '
                         '{"Loop": ..., "Frames": [[duration, root xyz, root wxyz, ...], ...]}')
    rows = data["Frames"]
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != ROW_LENGTH or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
            raise fail(path, f"frame {i} is not a list of {ROW_LENGTH} numbers (the humanoid3d "
                             f"character: duration, root position, root and 12 joint rotations)")
    frames = np.asarray(rows, np.float64).reshape(-1, ROW_LENGTH)
    if len(frames) < 2:
        raise fail(path, "has fewer than 2 frames")
    if not np.isfinite(frames).all():
        raise fail(path, "holds NaN or inf")
    for name, (_, _, cols) in SKELETON.items():
        if cols is not None and cols.stop - cols.start == 4:
            bad = np.flatnonzero(np.linalg.norm(frames[:, cols], axis=-1) < 1e-6)
            if bad.size:
                raise fail(path, f"frame {bad[0]}: the {name} quaternion is zero")
    durations = frames[:-1, 0]
    if (durations <= 0).any():
        raise fail(path, f"frame {int(np.flatnonzero(durations <= 0)[0])} has duration "
                         f"{durations[durations <= 0][0]}; expected > 0 s (0 only on the last)")
    points = forward_kinematics(frames)
    step = float(np.median(durations))
    times = np.concatenate([[0.0], np.cumsum(durations)])
    if np.abs(durations - step).max() > 1e-3 * step:
        # Unequal keyframes (e.g. pybullet's roll clip): resample onto a uniform grid.
        grid = np.arange(0.0, times[-1] + 1e-9, step)
        flat = points.reshape(len(points), -1)
        points = np.stack([np.interp(grid, times, flat[:, k]) for k in range(flat.shape[1])],
                          -1).reshape(len(grid), -1, 3)
    return RawMotion(path=path, names=tuple(SKELETON), points=points, fps=1.0 / step,
                     mm_per_unit=1000.0, up_axis="y", format="deepmimic",
                     cyclic=data.get("Loop") == "wrap")


def write(path: str, frames: np.ndarray, loop: str = "none") -> None:
    """Writes rows [T, 44] as a DeepMimic motion file (tests, converters)."""
    rows = [[float(v) for v in row] for row in np.asarray(frames, np.float64)]
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"Loop": loop, "Frames": rows}, f)
