"""Shared steps after reading: units and axes, gaps, resampling, retargeting to a
subject's body, floor, centring, treadmill and windows.

The generator's world (:mod:`tfrecords_tools.synth.motion`): millimetres, Z up, the person
within about 1.3 m of the origin, feet on the floor at z = 0 with the Human3.6M "Foot"
(ankle) joint 4 % of the body height above it, 50 fps.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from tfrecords_tools import skeleton
from tfrecords_tools.synth import body as body_lib
from tfrecords_tools.synth import motion as motion_lib
from tfrecords_tools.synth.motion_io.source import fail

FPS = motion_lib.FPS
# Plausible human size (mm) along the foot-to-head chain of bones; outside it a file is
# in other units or not a human skeleton.
CHAIN = ((3, 2), (2, 1), (1, 0), (0, 7), (7, 8), (8, 9), (9, 10))
BODY_CHAIN_RANGE_MM = (900.0, 2600.0)
# Units tried when a file does not declare its own (BVH): mm, cm, inches, metres.
UNIT_CHOICES = {"mm": 1.0, "cm": 10.0, "in": 25.4, "m": 1000.0}
# Units that are only used when named (``--motion_units``): CMU's mocap unit, 1/0.45 inch,
# which its own ASF files declare but its BVH release does not (a human there is about 27
# units from foot to head: inferring it would also misread small people drawn in inches).
NAMED_UNITS = {**UNIT_CHOICES, "cmu": 25.4 / 0.45}
# Human3.6M's ankle joint sits this fraction of the body height above the floor (as in
# the procedural motion).
ANKLE_HEIGHT = 0.04
_FEET = (3, 6)
_ZERO_BONE_MM = 1.0


def chain_length(joints: np.ndarray) -> float:
    """Median over frames of the foot-to-head bone chain of [T, 17, 3] joints."""
    return float(np.nanmedian(sum(np.linalg.norm(joints[:, a] - joints[:, b], axis=-1)
                                  for a, b in CHAIN)))


def check_size(path: str, joints_mm: np.ndarray) -> None:
    """Refuses joints whose body size is not a human's in mm (with a units hint)."""
    chain = chain_length(joints_mm)
    lo, hi = BODY_CHAIN_RANGE_MM
    if not lo <= chain <= hi:
        hint = (" — looks like metres; multiply by 1000" if lo / 1000 <= chain <= hi / 1000 else
                " — looks like centimetres; multiply by 10" if lo / 10 <= chain <= hi / 10
                else "")
        raise fail(path, f"foot-to-head bone chain is {chain:.3g} units, expected a human in "
                         f"millimetres ({lo:.0f}-{hi:.0f}){hint}")


def guess_mm_per_unit(path: str, joints: np.ndarray) -> float:
    """The unit of :data:`UNIT_CHOICES` that makes the body most human-sized (a 1.6 m
    foot-to-head chain, compared in log scale)."""
    chain = chain_length(joints)
    if not np.isfinite(chain) or chain <= 0:
        raise fail(path, "cannot infer units: the body has no size")
    return min(UNIT_CHOICES.values(), key=lambda f: abs(np.log(chain * f / 1600.0)))


def to_world(points: np.ndarray, mm_per_unit: float, up_axis: str) -> np.ndarray:
    """File units and axes -> mm, Z up (Y up: (x, y, z) -> (x, -z, y), a rotation)."""
    p = np.asarray(points, np.float64) * mm_per_unit
    if up_axis == "y":
        p = np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)
    elif up_axis != "z":
        raise ValueError(f"up axis {up_axis!r}: expected 'y' or 'z'")
    return p


def fill_gaps(points: np.ndarray, max_frames: int) -> np.ndarray:
    """Linearly interpolates interior runs of NaN frames no longer than ``max_frames``
    per point; longer gaps and gaps at either end stay NaN."""
    out = np.array(points, np.float64)
    t_all = np.arange(len(out))
    for p in range(out.shape[1]):
        bad = np.isnan(out[:, p]).any(-1)
        if not bad.any() or bad.all():
            continue
        good = np.flatnonzero(~bad)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], bad.astype(int), [0]])))
        for s, e in zip(edges[::2], edges[1::2]):
            if s == 0 or e == len(out) or e - s > max_frames:
                continue
            for k in range(3):
                out[s:e, p, k] = np.interp(t_all[s:e], good, out[good, p, k])
    return out


def trim_and_check(path: str, joints: np.ndarray, max_gap: int, fps: float) -> np.ndarray:
    """Drops leading/trailing frames with a missing joint; refuses interior gaps (NaN
    left by :func:`fill_gaps`) and zero-length bones, naming joints and frames."""
    ok = np.isfinite(joints).all(axis=(1, 2))
    if not ok.any():
        raise fail(path, "no frame has all 17 joints (every frame has NaN or a gap)")
    first, last = np.flatnonzero(ok)[[0, -1]]
    joints = joints[first:last + 1]
    bad = ~np.isfinite(joints)
    if bad.any():
        t, j = np.argwhere(bad.any(-1))[0]
        frames = np.flatnonzero(bad[:, j].any(-1)) + first
        raise fail(path, f"NaN or inf in frames {frames[:10].tolist()} (joint "
                         f"{skeleton.JOINT_NAMES[j]}): a gap longer than the "
                         f"{max_gap} frames ({1000 * max_gap / fps:.0f} ms) interpolated "
                         f"(--motion_max_gap_ms)")
    for p, c in skeleton.BONES:
        length = np.linalg.norm(joints[:, c] - joints[:, p], axis=-1)
        short = np.flatnonzero(length < _ZERO_BONE_MM)
        if len(short):
            raise fail(path, f"zero-length bone {skeleton.JOINT_NAMES[p]}-"
                             f"{skeleton.JOINT_NAMES[c]} in frames {(short + first)[:10].tolist()}"
                             f" (two joints of the mapping at the same place)")
    return joints


def resample(joints: np.ndarray, fps_in: float, fps_out: float = FPS) -> np.ndarray:
    """Linear interpolation of positions at ``fps_out`` from time 0 to the last frame.

    Bone lengths of interpolated frames shrink slightly in fast rotations; retargeting
    restores them.
    """
    if abs(fps_in - fps_out) < 1e-9:
        return np.array(joints, np.float64)
    t_in = np.arange(len(joints)) / fps_in
    t_out = np.arange(int(np.floor(t_in[-1] * fps_out + 1e-9)) + 1) / fps_out
    flat = joints.reshape(len(joints), -1)
    out = np.stack([np.interp(t_out, t_in, flat[:, k]) for k in range(flat.shape[1])], -1)
    return out.reshape((len(t_out),) + joints.shape[1:])


def subject_bone_lengths(shape: body_lib.BodyShape) -> np.ndarray:
    """Length (mm) of the bone ending at each joint [17] (0 for the root) of a body, as
    the procedural motion's forward kinematics builds it."""
    zero = np.zeros(1)
    channels = {k: zero for k in ("root_yaw", "root_pitch", "root_roll", "spine_flex",
                                  "spine_lat", "spine_twist", "neck_flex", "neck_lat",
                                  "neck_twist")}
    for s in "lr":
        for k in ("hip_flex", "hip_abd", "hip_twist", "knee", "sh_elev", "sh_plane",
                  "sh_twist", "elbow"):
            channels[f"{s}_{k}"] = zero
    rest = motion_lib.forward_kinematics(shape, channels)[0]
    return bone_lengths(rest[None])[0]


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """[..., 17] length of the bone from each joint's parent (0 for the root)."""
    out = np.zeros(joints.shape[:-1])
    for p, c in skeleton.BONES:
        out[..., c] = np.linalg.norm(joints[..., c, :] - joints[..., p, :], axis=-1)
    return out


def retarget(joints: np.ndarray, lengths: np.ndarray, root_scale: float = 1.0) -> np.ndarray:
    """Keeps every bone's direction, sets its length from ``lengths`` [17].

    Walks the kinematic tree from the pelvis (parents before children). The root path is
    scaled by ``root_scale`` (the leg-length ratio: a shorter person takes shorter steps,
    so the feet do not slide).
    """
    src = np.asarray(joints, np.float64)
    out = np.zeros_like(src)
    out[:, skeleton.ROOT] = src[:, skeleton.ROOT] * root_scale
    for c, p in enumerate(skeleton.PARENTS):
        if p < 0:
            continue
        d = src[:, c] - src[:, p]
        d /= np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-9)
        out[:, c] = out[:, p] + lengths[c] * d
    return out


def leg_length(lengths: np.ndarray) -> float:
    """Mean hip-knee-ankle length of [17] bone lengths."""
    return float((lengths[2] + lengths[3] + lengths[5] + lengths[6]) / 2)


def put_on_floor(joints: np.ndarray, height: float) -> np.ndarray:
    """Shifts the take vertically (one offset for the whole take, so jumps stay jumps) so
    that its lowest ankle sits at the ankle height of a person ``height`` mm tall."""
    return joints + [0.0, 0.0, ANKLE_HEIGHT * height - float(joints[:, _FEET, 2].min())]


def centre(joints: np.ndarray) -> np.ndarray:
    """Moves the take horizontally so the pelvis' mean position is the world origin."""
    return joints - np.concatenate([joints[:, skeleton.ROOT, :2].mean(0), [0.0]])


def treadmill(joints: np.ndarray) -> np.ndarray:
    """Removes the pelvis' horizontal position per frame (heading and height kept)."""
    return joints - np.concatenate(
        [joints[:, skeleton.ROOT:skeleton.ROOT + 1, :2], np.zeros((len(joints), 1, 1))], -1)


def loop(joints: np.ndarray, count: int, cyclic: bool) -> np.ndarray:
    """Extends a take to at least ``count`` frames (a longer take is returned as is).

    Cyclic takes (the last frame repeats the first pose, moved) repeat from their second
    frame on, each repetition shifted horizontally by the first-to-last pelvis path, so a
    walk cycle walks on; other takes play back and forth (no jump in any joint).
    """
    if len(joints) >= count or len(joints) < 2:
        return joints
    if cyclic:
        step = np.concatenate([joints[-1, skeleton.ROOT, :2] - joints[0, skeleton.ROOT, :2],
                               [0.0]])
        parts, shift = [joints], step
        while sum(len(p) for p in parts) < count:
            parts.append(joints[1:] + shift)
            shift = shift + step
    else:
        parts, forward = [joints], False
        while sum(len(p) for p in parts) < count:
            parts.append((joints if forward else joints[::-1])[1:])
            forward = not forward
    return np.concatenate(parts)[:count]


def windows(count: int, length: int) -> list:
    """Consecutive non-overlapping ``(start, stop)`` windows of ``length`` frames.

    ``length`` 0, or a take no longer than ``length``: the whole take. A remainder shorter
    than half a window is dropped; a longer one is kept as a last, shorter window.
    """
    if length <= 0 or count <= length:
        return [(0, count)]
    out = [(s, s + length) for s in range(0, count - length + 1, length)]
    rest = count - out[-1][1]
    if rest >= max(length // 2, 2):
        out.append((out[-1][1], count))
    return out


def height_of(shape: Optional[body_lib.BodyShape], joints: np.ndarray) -> float:
    """Standing height (mm): the body's, or for no body, the chain plus a head top."""
    return shape.height if shape is not None else chain_length(joints) * 1.05
