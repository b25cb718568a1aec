"""The 17-joint Human3.6M skeleton used everywhere in tf_synchro.

Order and names follow docs/DESIGN.md §2. Joint 0 (Hip) is the root.
"""
from __future__ import annotations

import numpy as np

NUM_JOINTS = 17

JOINT_NAMES = (
    "Hip", "RHip", "RKnee", "RFoot", "LHip", "LKnee", "LFoot", "Spine", "Thorax",
    "Neck/Nose", "Head", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist",
)

# Raw Human3.6M (32 joints) -> 17-joint order above.
H36M_32_TO_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)

# Parent of each joint in the kinematic tree (-1 for the root).
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)

# (parent, child) pairs: the bones drawn and measured.
BONES = tuple((p, c) for c, p in enumerate(PARENTS) if p >= 0)

LEFT_JOINTS = (4, 5, 6, 11, 12, 13)
RIGHT_JOINTS = (1, 2, 3, 14, 15, 16)

# Permutation applied to joints when an image is mirrored: left and right swap.
FLIP_PERMUTATION = tuple(
    {**{l: r for l, r in zip(LEFT_JOINTS, RIGHT_JOINTS)},
     **{r: l for l, r in zip(LEFT_JOINTS, RIGHT_JOINTS)}}.get(j, j)
    for j in range(NUM_JOINTS))

ROOT = 0


def flip_joints_camera(joints: np.ndarray) -> np.ndarray:
    """Mirrors camera-frame joints [..., 17, 3] for a horizontally flipped image.

    x is negated and left/right joints swap, so that "LWrist" still names the
    left wrist of the (mirrored) person.
    """
    out = np.asarray(joints)[..., FLIP_PERMUTATION, :].copy()
    out[..., 0] = -out[..., 0]
    return out


def root_relative(joints: np.ndarray) -> np.ndarray:
    """Subtracts the root joint (Hip) from every joint of [..., 17, 3]."""
    joints = np.asarray(joints)
    return joints - joints[..., ROOT:ROOT + 1, :]
