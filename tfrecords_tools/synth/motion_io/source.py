"""What every motion-capture reader returns, and the one error type they raise."""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np


class MotionFileError(ValueError):
    """An unusable motion file; the message is one line starting with the file's path."""


def fail(path: str, message: str) -> MotionFileError:
    """The error for ``path``: ``motion file <path>: <message>`` (one line)."""
    return MotionFileError(f"motion file {path}: {' '.join(message.split())}")


@dataclasses.dataclass
class RawMotion:
    """Named 3D points of one take, as stored in the file (its units and axes).

    Attributes:
      path: the file read.
      names: one name per point (joint, bone end, marker or virtual marker).
      points: [T, P, 3] positions; NaN where the file marks a point missing (C3D gaps).
      fps: frames per second of ``points``.
      mm_per_unit: millimetres per file unit when the file declares its units (C3D
        ``POINT:UNITS``, ASF ``:units length``, AMASS metres); None: unknown (BVH).
      up_axis: the format's vertical axis by convention (``"y"`` or ``"z"``).
      format: short format name for messages (``bvh``, ``asf/amc``, ``c3d``, ``amass npz``).
      h36m: True for the generator's own ``joints3d_world`` .npz (already 17 Human3.6M
        joints in the generator's world).
      cyclic: the take loops (DeepMimic ``"Loop": "wrap"``): its last frame repeats the
        first pose; see :func:`~tfrecords_tools.synth.motion_io.retarget.loop`.
    """

    path: str
    names: tuple
    points: np.ndarray
    fps: float
    mm_per_unit: Optional[float]
    up_axis: str
    format: str
    h36m: bool = False
    cyclic: bool = False


# ----------------------------------------------------------------------------- rotations

def axis_rotation(axis: str, angle: np.ndarray) -> np.ndarray:
    """Right-handed rotations [..., 3, 3] about ``axis`` ("x", "y" or "z") by radians."""
    angle = np.asarray(angle, np.float64)
    c, s = np.cos(angle), np.sin(angle)
    o, z = np.ones_like(angle), np.zeros_like(angle)
    rows = {"x": ((o, z, z), (z, c, -s), (z, s, c)),
            "y": ((c, z, s), (z, o, z), (-s, z, c)),
            "z": ((c, -s, z), (s, c, z), (z, z, o))}[axis.lower()]
    return np.stack([np.stack(r, -1) for r in rows], -2)


def euler_matrix(order: str, angles: np.ndarray) -> np.ndarray:
    """R = R(order[0]) @ R(order[1]) @ ... for radians ``angles`` [..., len(order)].

    The first axis listed is the outermost: its rotation is applied last to a vector.
    """
    angles = np.asarray(angles, np.float64)
    out = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    for k, axis in enumerate(order):
        out = out @ axis_rotation(axis, angles[..., k])
    return out
