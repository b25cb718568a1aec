"""Procedural human motion: actions -> joint angles -> forward kinematics -> world joints.

A pose is a set of angle *channels* (degrees) per frame. Each action maps a time-warped
phase to channels; the time warp (speed 0 in pauses) gives the still periods real
recordings have, which the motion filter later drops. Angles are clamped to joint limits
before forward kinematics (FK). Then the feet are put on the floor and, for actions in
place, the root is shifted so the feet stay planted.

Body-local frame: x forward, y left, z up. World: mm, z up (Human3.6M), the person moves
within about 1.5 m of the origin where the Human3.6M cameras look.
"""
from __future__ import annotations

import math
from typing import Dict

import numpy as np

from tfrecords_tools import skeleton
from tfrecords_tools.synth import body as body_lib

FPS = 50.0
# The ten standard actions: every Human3.6M-named subject performs them (S1's are the
# fine-tuning labels, S9/S11's the standard test).
ACTIONS = ("Walking", "Waving", "Squatting", "Reaching", "SittingDown", "Boxing", "Bending",
           "Jumping", "Turning", "Pointing")
# Motion families only the extra unlabelled people perform: poses the labelled actions do
# not contain, so pre-training sees more of the pose space than fine-tuning does.
# ``RandomMotion`` moves every joint independently and smoothly within its limits;
# ``Mixed`` composes the legs of one standard action with the arms of another.
EXTRA_ACTIONS = ("Dancing", "Stretching", "Throwing", "RandomMotion", "Mixed")
# Held-out families: only the test subjects perform them (the unseen-motion test set).
# No pre-training or fine-tuning data contains them, by construction.
UNSEEN_ACTIONS = ("Kicking", "Lunging", "Climbing")
ALL_ACTIONS = ACTIONS + EXTRA_ACTIONS + UNSEEN_ACTIONS
# Actions that travel: their root follows a path instead of keeping the feet planted.
_LOCOMOTION = ("Walking",)
# Radius (mm) of the area the person stays in, around the world origin.
CAPTURE_RADIUS = 1300.0

Channels = Dict[str, np.ndarray]

# (min, max) degrees. Hip flex is the thigh angle from vertical (pelvis tilt compensated),
# shoulder elevation/plane is the swing of the upper arm (elevation from hanging down; plane
# 0 = forward, 90 = sideways outward).
JOINT_LIMITS = {
    "spine_flex": (-15, 45), "spine_lat": (-20, 20), "spine_twist": (-35, 35),
    "neck_flex": (-40, 45), "neck_lat": (-30, 30), "neck_twist": (-75, 75),
    "hip_flex": (-35, 125), "hip_abd": (-20, 45), "hip_twist": (-40, 40), "knee": (0, 150),
    "sh_elev": (0, 175), "sh_twist": (-90, 90), "elbow": (0, 150),
    "root_pitch": (-20, 95), "root_roll": (-20, 20),
}


# ----------------------------------------------------------------------------- rotations

def _rx(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1),
                     np.stack([z, s, c], -1)], -2)


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1),
                     np.stack([-s, z, c], -1)], -2)


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                     np.stack([z, z, o], -1)], -2)


def _axis_angle(axis, angle):
    """Rodrigues: rotations [T, 3, 3] about unit axes [T, 3] by angles [T]."""
    k = axis
    kx = np.zeros(k.shape[:-1] + (3, 3))
    kx[..., 0, 1], kx[..., 0, 2] = -k[..., 2], k[..., 1]
    kx[..., 1, 0], kx[..., 1, 2] = k[..., 2], -k[..., 0]
    kx[..., 2, 0], kx[..., 2, 1] = -k[..., 1], k[..., 0]
    s, c = np.sin(angle)[..., None, None], np.cos(angle)[..., None, None]
    return np.eye(3) + s * kx + (1 - c) * (kx @ kx)


def _swing(elev, plane, side):
    """Rotation taking the hanging direction (0, 0, -1) to elevation/plane (side +1 left)."""
    axis = np.stack([side * np.sin(plane), -np.cos(plane), np.zeros_like(plane)], -1)
    return _axis_angle(axis, elev)


# ----------------------------------------------------------------------------- style

def _style(subject: body_lib.Subject, seed: int) -> dict:
    """Per-subject motion style: tempo, amplitude, posture, handedness."""
    rng = body_lib._rng_for(subject.name, seed, "style")
    return {"tempo": float(rng.uniform(0.85, 1.15)), "amp": float(rng.uniform(0.8, 1.2)),
            "lean": float(rng.normal(3, 3)), "arm_out": float(rng.uniform(6, 14)),
            "hand": float(rng.choice([-1.0, 1.0], p=[0.3, 0.7])),  # +1: right-handed
            "knee": float(rng.uniform(2, 8)), "head": float(rng.normal(0, 4))}


def _smooth_noise(rng, t_count: int, sigma_frames: float, scale: float = 1.0) -> np.ndarray:
    """Zero-mean Gaussian-smoothed noise with roughly unit std times ``scale``."""
    pad = int(3 * sigma_frames) + 1
    x = rng.normal(size=t_count + 2 * pad)
    k = np.exp(-0.5 * (np.arange(-pad, pad + 1) / sigma_frames) ** 2)
    k /= np.sqrt((k * k).sum())
    return np.convolve(x, k, mode="valid")[:t_count] * scale


def _speed_envelope(rng, t_count: int, fps: float, active_s=(3.0, 8.0),
                    pause_s=(0.3, 1.5)) -> np.ndarray:
    """Speed in [0, 1]: active stretches with smooth stops (pauses at speed 0)."""
    env = np.zeros(t_count)
    t = 0
    active = rng.random() < 0.85
    while t < t_count:
        lo, hi = active_s if active else pause_s
        n = int(rng.uniform(lo, hi) * fps)
        env[t:t + n] = 1.0 if active else 0.0
        t += n
        active = not active
    k = np.hanning(int(0.5 * fps) + 1)
    k /= k.sum()
    return np.clip(np.convolve(np.pad(env, len(k), mode="edge"), k, mode="same")[len(k):-len(k)],
                   0.0, 1.0)


def ramp(x, a, b):
    """Smoothstep: 0 for x <= a, 1 for x >= b."""
    u = np.clip((x - a) / (b - a), 0.0, 1.0)
    return u * u * (3 - 2 * u)


def bump(x, a, b, c, d):
    """0 before a, rises to 1 by b, stays until c, falls to 0 by d."""
    return ramp(x, a, b) * (1 - ramp(x, c, d))


def _per_cycle(rng, phase, low, high):
    """A random value per action cycle (indexed by floor(phase))."""
    vals = rng.uniform(low, high, size=int(np.floor(phase.max())) + 2)
    return vals[np.floor(phase).astype(int)]


def _rest(t_count: int, st: dict) -> Channels:
    z = np.zeros(t_count)
    ch = {k: z.copy() for k in (
        "root_yaw", "root_pitch", "root_roll", "root_lift", "spine_flex", "spine_lat",
        "spine_twist", "neck_flex", "neck_lat", "neck_twist")}
    ch["spine_flex"] += st["lean"]
    ch["neck_twist"] += st["head"]
    for s in "lr":
        ch.update({f"{s}_hip_flex": z.copy(), f"{s}_hip_abd": z + 3, f"{s}_hip_twist": z + 5,
                   f"{s}_knee": z + st["knee"], f"{s}_sh_elev": z + st["arm_out"],
                   f"{s}_sh_plane": z + 80, f"{s}_sh_twist": z.copy(), f"{s}_elbow": z + 12})
    return ch


def _arm_fwd(ch, s, flex, abd=None):
    """Sets a shoulder from signed forward flex and outward abduction (degrees)."""
    abd = ch[f"{s}_sh_elev"] * 0 + (abd if abd is not None else 8)
    ch[f"{s}_sh_elev"] = np.hypot(flex, abd)
    ch[f"{s}_sh_plane"] = np.degrees(np.arctan2(abd, flex))


# ----------------------------------------------------------------------------- actions
# Each action: (phase [T] in cycles, channels, style, rng, extra) -> None (edits channels).
# ``freq`` is cycles per second at speed 1 before the subject's tempo.

def _walking(p, ch, st, rng, ex):
    a = st["amp"]
    th = 2 * np.pi * p
    hip_amp = 22 * a
    ch["r_hip_flex"] = 5 + hip_amp * np.sin(th)
    ch["l_hip_flex"] = 5 + hip_amp * np.sin(th + np.pi)
    ch["r_knee"] = 6 + 55 * a * np.maximum(0, np.cos(th - 0.5)) ** 1.5
    ch["l_knee"] = 6 + 55 * a * np.maximum(0, np.cos(th + np.pi - 0.5)) ** 1.5
    _arm_fwd(ch, "r", -18 * a * np.sin(th))
    _arm_fwd(ch, "l", -18 * a * np.sin(th + np.pi))
    ch["r_elbow"] = 20 + 12 * np.sin(th + np.pi) * a
    ch["l_elbow"] = 20 + 12 * np.sin(th) * a
    ch["spine_twist"] = 6 * np.sin(th)
    ch["root_roll"] = 3 * np.sin(th)
    ch["spine_flex"] += 4
    ex["stride"] = 2 * 2 * math.sin(math.radians(hip_amp)) * ex["leg"]


def _waving(p, ch, st, rng, ex):
    f = p % 1
    s = "r" if st["hand"] > 0 else "l"
    s = s if rng.random() < 0.8 else ("l" if s == "r" else "r")
    up = bump(f, 0.05, 0.2, 0.75, 0.9)
    waves = _per_cycle(rng, p, 3, 6)
    osc = np.sin(2 * np.pi * f * waves * 2.5)
    ch[f"{s}_sh_elev"] = ch[f"{s}_sh_elev"] * (1 - up) + up * (115 + 15 * osc * 0.3)
    ch[f"{s}_sh_plane"] = ch[f"{s}_sh_plane"] * (1 - up) + up * _per_cycle(rng, p, 40, 85)
    ch[f"{s}_sh_twist"] = up * 80  # forearm points up when the elbow flexes
    ch[f"{s}_elbow"] = 12 + up * (55 + 30 * osc)
    ch["neck_twist"] += up * (-12 if s == "r" else 12)  # glance towards the waving hand
    ch["spine_lat"] = up * 4 * osc


def _squatting(p, ch, st, rng, ex):
    f = p % 1
    d = bump(f, 0.05, 0.45, 0.55, 0.95) * _per_cycle(rng, p, 0.7, 1.0) * st["amp"]
    for s in "lr":
        ch[f"{s}_hip_flex"] = 100 * d
        ch[f"{s}_knee"] = st["knee"] + 120 * d
        ch[f"{s}_hip_abd"] = 3 + 12 * d
        _arm_fwd(ch, s, 80 * d, 10)
        ch[f"{s}_elbow"] = 12 + 20 * d
    ch["root_pitch"] = 40 * d


def _reaching(p, ch, st, rng, ex):
    f = p % 1
    s_sign = np.where(_per_cycle(rng, p, 0, 1) < 0.5 + 0.3 * st["hand"], 1, -1)  # 1 = right
    u = bump(f, 0.05, 0.35, 0.5, 0.85)
    elev = _per_cycle(rng, p, 50, 165)
    plane = _per_cycle(rng, p, -20, 100)
    lean = _per_cycle(rng, p, -5, 20)
    for s, sign in (("r", 1), ("l", -1)):
        w = u * (s_sign == sign)
        ch[f"{s}_sh_elev"] = ch[f"{s}_sh_elev"] * (1 - w) + w * elev
        ch[f"{s}_sh_plane"] = ch[f"{s}_sh_plane"] * (1 - w) + w * plane
        ch[f"{s}_elbow"] = ch[f"{s}_elbow"] * (1 - w) + w * 8
        ch[f"{s}_sh_twist"] = -30 * w
    ch["spine_flex"] += u * lean
    ch["spine_twist"] = u * s_sign * -12 * np.cos(np.radians(plane))
    ch["spine_lat"] = u * s_sign * 6 * (elev > 120)
    ch["neck_flex"] = -u * (elev - 90) * 0.25


def _sitting_down(p, ch, st, rng, ex):
    f = p % 1
    sit = bump(f, 0.1, 0.3, 0.7, 0.9)
    lean = bump(f, 0.08, 0.2, 0.25, 0.4) + bump(f, 0.62, 0.75, 0.8, 0.92)
    for s in "lr":
        ch[f"{s}_hip_flex"] = 88 * sit
        ch[f"{s}_knee"] = st["knee"] + 90 * sit
        ch[f"{s}_hip_abd"] = 3 + 8 * sit
        ch[f"{s}_sh_elev"] = ch[f"{s}_sh_elev"] * (1 - sit) + sit * 35
        ch[f"{s}_sh_plane"] = ch[f"{s}_sh_plane"] * (1 - sit) + sit * 10
        ch[f"{s}_elbow"] = 12 + 65 * sit
    ch["root_pitch"] = 35 * lean + 8 * sit
    ch["spine_flex"] += 8 * lean
    fidget = _smooth_noise(rng, len(p), 20, 10) * sit
    for s in "lr":  # hands move while seated (gesturing, adjusting)
        ch[f"{s}_elbow"] = ch[f"{s}_elbow"] + _smooth_noise(rng, len(p), 15, 15) * sit
    ch["spine_twist"] = fidget
    ch["neck_twist"] += 2 * fidget


def _boxing(p, ch, st, rng, ex):
    f = (p * 2) % 1  # two punches per cycle
    side = np.where(np.floor(p * 2) % 2 == 0, 1, -1)  # 1 = right punch
    punch = bump(f, 0.1, 0.25, 0.35, 0.55) * _per_cycle(rng, p * 2, 0.6, 1.0)
    bounce = np.sin(2 * np.pi * p * 3)
    lead = "l" if st["hand"] > 0 else "r"
    rear = "r" if lead == "l" else "l"
    ch[f"{lead}_hip_flex"] = 18 + 0 * p
    ch[f"{rear}_hip_flex"] = -12 + 0 * p
    for s, sign in (("r", 1), ("l", -1)):
        ch[f"{s}_knee"] = 22 + 6 * bounce
        w = punch * (side == sign)
        # Guard: fists in front of the chin; punch: arm straight forward at shoulder height.
        ch[f"{s}_sh_elev"] = 50 * (1 - w) + 90 * w
        ch[f"{s}_sh_plane"] = -20 * (1 - w) - 10 * w
        ch[f"{s}_sh_twist"] = -30 + 0 * w
        ch[f"{s}_elbow"] = 125 * (1 - w) + 15 * w
    ch["spine_twist"] = 18 * punch * side
    ch["spine_flex"] += 8
    ch["neck_flex"] = 8 + 0 * p
    ch["root_yaw"] = (15 if lead == "l" else -15) + 0 * p


def _bending(p, ch, st, rng, ex):
    f = p % 1
    d = bump(f, 0.05, 0.4, 0.5, 0.9) * _per_cycle(rng, p, 0.6, 1.0)
    ch["root_pitch"] = 80 * d
    ch["spine_flex"] += 25 * d
    for s in "lr":
        ch[f"{s}_knee"] = st["knee"] + _per_cycle(rng, p, 5, 35) * d
        ch[f"{s}_hip_flex"] = ch[f"{s}_knee"] * 0.4
        _arm_fwd(ch, s, 95 * d, 8)
    ch["neck_flex"] = -20 * d


def _jumping(p, ch, st, rng, ex):
    f = (p * 2) % 1  # two jumps per cycle: open, close
    open_ = 0.5 - 0.5 * np.cos(2 * np.pi * p)
    air = np.maximum(0, np.sin(2 * np.pi * f)) ** 1.2
    land = np.maximum(0, -np.sin(2 * np.pi * f))
    a = st["amp"]
    for s in "lr":
        ch[f"{s}_hip_abd"] = 3 + 22 * open_ * a
        ch[f"{s}_knee"] = st["knee"] + 35 * land + 8 * air
        ch[f"{s}_hip_flex"] = 15 * land + 4 * air
        ch[f"{s}_sh_elev"] = 12 + 150 * open_ * a
        ch[f"{s}_sh_plane"] = 85 + 0 * p
        ch[f"{s}_elbow"] = 15 + 10 * open_
    ch["root_pitch"] = 10 * land
    ch["root_lift"] = 90 * air * a


def _turning(p, ch, st, rng, ex):
    f = p % 1
    turn = ramp(f, 0.1, 0.8)
    total = _per_cycle(rng, p, 60, 180) * np.where(_per_cycle(rng, p, 0, 1) < 0.5, -1, 1)
    # Heading accumulates over cycles: cumulative sum of completed turns + current one.
    k = np.floor(p).astype(int)
    done = np.concatenate([[0], np.cumsum([total[np.argmax(k == i)] if np.any(k == i) else 0
                                          for i in range(k.max() + 1)])])
    ch["root_yaw"] = done[k] + total * turn
    step = np.sin(2 * np.pi * f * 4) * bump(f, 0.1, 0.2, 0.7, 0.8)
    ch["r_hip_flex"] = 15 * np.maximum(step, 0)
    ch["l_hip_flex"] = 15 * np.maximum(-step, 0)
    ch["r_knee"] = st["knee"] + 30 * np.maximum(step, 0)
    ch["l_knee"] = st["knee"] + 30 * np.maximum(-step, 0)
    lead = bump(f, 0.05, 0.15, 0.6, 0.8) * np.sign(total)
    ch["neck_twist"] += 35 * lead
    ch["spine_twist"] = 10 * lead


def _pointing(p, ch, st, rng, ex):
    f = p % 1
    s_sign = np.where(_per_cycle(rng, p, 0, 1) < 0.5 + 0.3 * st["hand"], 1, -1)
    u = bump(f, 0.05, 0.3, 0.5, 0.8)
    plane = _per_cycle(rng, p, -30, 110)
    elev = _per_cycle(rng, p, 70, 110)
    for s, sign in (("r", 1), ("l", -1)):
        w = u * (s_sign == sign)
        ch[f"{s}_sh_elev"] = ch[f"{s}_sh_elev"] * (1 - w) + w * elev
        ch[f"{s}_sh_plane"] = ch[f"{s}_sh_plane"] * (1 - w) + w * plane
        ch[f"{s}_elbow"] = ch[f"{s}_elbow"] * (1 - w) + w * 5
    ch["neck_twist"] += u * s_sign * -(plane - 20) * 0.4
    ch["spine_twist"] = u * s_sign * -(plane - 20) * 0.1


# ----------------------------------------------------------------------------- extra families
# Pre-training-only families (EXTRA_ACTIONS) and the held-out test families (UNSEEN_ACTIONS).

def _phase_noise(rng, p, sigma_cycles: float, scale: float = 1.0) -> np.ndarray:
    """Smooth noise of the action phase, not of time: it freezes in the take's pauses."""
    step = 0.02
    grid = np.arange(0.0, p.max() - p.min() + 2 * step, step)
    noise = _smooth_noise(rng, len(grid), sigma_cycles / step, scale)
    return np.interp(p - p.min(), grid, noise)


def _dancing(p, ch, st, rng, ex):
    th = 2 * np.pi * p
    a = st["amp"]
    bounce = 0.5 - 0.5 * np.cos(2 * th)
    for s, sign in (("r", 1), ("l", -1)):
        ch[f"{s}_knee"] = st["knee"] + 25 * bounce * a + 10 * np.maximum(0, sign * np.sin(th))
        ch[f"{s}_hip_flex"] = 8 * bounce + 12 * np.maximum(0, sign * np.sin(th))
        ch[f"{s}_hip_abd"] = 6 + 6 * bounce
        # Arms trace their own smooth random figures, large and fast.
        ch[f"{s}_sh_elev"] = 70 + 55 * _phase_noise(rng, p, 0.3) * a
        ch[f"{s}_sh_plane"] = 45 + 45 * _phase_noise(rng, p, 0.35)
        ch[f"{s}_sh_twist"] = 35 * _phase_noise(rng, p, 0.35)
        ch[f"{s}_elbow"] = 60 + 40 * _phase_noise(rng, p, 0.25)
    ch["spine_twist"] = 20 * np.sin(th) * a
    ch["spine_lat"] = 8 * np.sin(2 * th)
    ch["root_roll"] = 5 * np.sin(th)
    ch["root_yaw"] = 25 * np.sin(th / 2)
    ch["neck_lat"] = 10 * np.sin(th + 1)


def _stretching(p, ch, st, rng, ex):
    f = p % 1
    kind = _per_cycle(rng, p, 0, 3).astype(int)  # 0 overhead, 1 side bend, 2 arm across
    side = np.where(_per_cycle(rng, p, 0, 1) < 0.5, 1, -1)  # 1 = right
    u = bump(f, 0.05, 0.35, 0.65, 0.95)
    over, bend, across = u * (kind == 0), u * (kind == 1), u * (kind == 2)
    for s, sign in (("r", 1), ("l", -1)):
        mine = (side == sign)
        up = over + bend * mine
        ch[f"{s}_sh_elev"] = ch[f"{s}_sh_elev"] * (1 - up) + up * 170
        ch[f"{s}_sh_plane"] = ch[f"{s}_sh_plane"] * (1 - up) + up * 60
        ch[f"{s}_elbow"] = ch[f"{s}_elbow"] * (1 - up) + up * 10
        w = across * mine  # arm pulled across the chest
        ch[f"{s}_sh_elev"] = ch[f"{s}_sh_elev"] * (1 - w) + w * 90
        ch[f"{s}_sh_plane"] = ch[f"{s}_sh_plane"] * (1 - w) + w * -40
        ch[f"{s}_sh_twist"] = ch[f"{s}_sh_twist"] + w * 30
    ch["spine_lat"] = bend * side * -18
    ch["spine_flex"] += over * -10
    ch["neck_flex"] = over * -25
    ch["spine_twist"] = across * side * 15


def _throwing(p, ch, st, rng, ex):
    f = p % 1
    s = "r" if st["hand"] > 0 else "l"
    o = "l" if s == "r" else "r"
    sign = 1 if s == "r" else -1
    wind = bump(f, 0.05, 0.35, 0.4, 0.5)          # arm back and up
    throw = bump(f, 0.4, 0.5, 0.55, 0.85)         # arm forward and down
    power = _per_cycle(rng, p, 0.6, 1.0)
    ch[f"{s}_sh_elev"] = ch[f"{s}_sh_elev"] * (1 - wind - throw) + (wind * 150 + throw * 80)
    ch[f"{s}_sh_plane"] = ch[f"{s}_sh_plane"] * (1 - wind - throw) + (wind * 100 + throw * 0)
    ch[f"{s}_sh_twist"] = wind * 60
    ch[f"{s}_elbow"] = 12 + wind * 100 + throw * 10
    _arm_fwd(ch, o, 60 * wind * power, 20)
    ch[f"{o}_hip_flex"] = 25 * (wind + throw) * power        # step with the other leg
    ch[f"{o}_knee"] = st["knee"] + 20 * (wind + throw)
    ch[f"{s}_hip_flex"] = -15 * throw
    ch["spine_twist"] = sign * (25 * wind - 25 * throw) * power
    ch["spine_flex"] += 20 * throw * power - 8 * wind


def _random_motion(p, ch, st, rng, ex):
    """Every joint wanders smoothly and independently inside (most of) its limits."""
    def wander(lo, hi, sigma):
        # A smooth random walk of the phase (it freezes in pauses), squashed into [lo, hi].
        x = np.tanh(0.9 * _phase_noise(rng, p, sigma / 50.0) + rng.normal(0, 0.3))
        return lo + (hi - lo) * (0.5 + 0.5 * x)

    for s in "lr":
        ch[f"{s}_hip_flex"] = wander(-20, 95, 30)
        ch[f"{s}_hip_abd"] = wander(-5, 35, 40)
        ch[f"{s}_hip_twist"] = wander(-25, 30, 40)
        ch[f"{s}_knee"] = np.maximum(wander(0, 120, 25), ch[f"{s}_hip_flex"] * 0.3)
        ch[f"{s}_sh_elev"] = wander(5, 170, 20)
        ch[f"{s}_sh_plane"] = wander(-30, 110, 25)
        ch[f"{s}_sh_twist"] = wander(-70, 80, 25)
        ch[f"{s}_elbow"] = wander(0, 140, 20)
    ch["spine_flex"] = wander(-10, 40, 40)
    ch["spine_lat"] = wander(-15, 15, 40)
    ch["spine_twist"] = wander(-30, 30, 40)
    ch["neck_flex"] = wander(-30, 35, 30)
    ch["neck_twist"] = wander(-50, 50, 30)
    # Keep the supporting leg mostly straight so the body stands on its feet.
    stand = np.argmin([ch["l_hip_flex"].mean(), ch["r_hip_flex"].mean()])
    leg = "lr"[stand]
    ch[f"{leg}_hip_flex"] = ch[f"{leg}_hip_flex"] * 0.3
    ch[f"{leg}_knee"] = ch[f"{leg}_knee"] * 0.3
    ch["root_pitch"] = 0.35 * np.clip(ch["spine_flex"], 0, None)


_MIX_LEGS = ("Walking", "Squatting", "Jumping", "Turning", "Boxing", "Bending")
_MIX_ARMS = ("Waving", "Reaching", "Boxing", "Pointing", "Jumping", "Squatting")
_LEG_CHANNELS = ("root_pitch", "root_roll", "root_lift", "spine_flex") + tuple(
    f"{s}_{k}" for s in "lr" for k in ("hip_flex", "hip_abd", "hip_twist", "knee"))
_ARM_CHANNELS = ("spine_twist", "spine_lat", "neck_flex", "neck_twist") + tuple(
    f"{s}_{k}" for s in "lr" for k in ("sh_elev", "sh_plane", "sh_twist", "elbow"))


def _mixed(p, ch, st, rng, ex):
    """Legs of one standard action with the arms of another (chosen per take)."""
    legs = _MIX_LEGS[rng.integers(len(_MIX_LEGS))]
    arms = _MIX_ARMS[rng.integers(len(_MIX_ARMS))]
    lower, upper = dict(ch), dict(ch)
    lx, ux = dict(ex), dict(ex)
    _ACTION_TABLE[legs][0](p * _ACTION_TABLE[legs][1] / 0.4, lower, st, rng, lx)
    _ACTION_TABLE[arms][0](p * _ACTION_TABLE[arms][1] / 0.4, upper, st, rng, ux)
    lower["root_lift"] = lower["root_lift"] * 0  # both feet stay on the floor
    for k in _LEG_CHANNELS:
        ch[k] = lower[k]
    for k in _ARM_CHANNELS:
        ch[k] = upper[k]
    ch["root_yaw"] = lower["root_yaw"]


def _kicking(p, ch, st, rng, ex):
    f = p % 1
    side = np.where(_per_cycle(rng, p, 0, 1) < 0.5 + 0.2 * st["hand"], 1, -1)  # 1 = right leg
    chamber = bump(f, 0.05, 0.3, 0.35, 0.5)
    extend = bump(f, 0.3, 0.48, 0.55, 0.85)
    height = _per_cycle(rng, p, 55, 95)
    front = _per_cycle(rng, p, 0, 1) < 0.7  # front kick, else side kick
    for s, sign in (("r", 1), ("l", -1)):
        k = (side == sign)
        lift = np.maximum(chamber, extend) * k
        ch[f"{s}_hip_flex"] = lift * np.where(front, height, 25)
        ch[f"{s}_hip_abd"] = 3 + lift * np.where(front, 0, height * 0.6)
        ch[f"{s}_knee"] = st["knee"] + k * (chamber * 100 * (1 - extend) + extend * 5)
        _arm_fwd(ch, s, 30 * lift + 20, 35 + 20 * lift)   # arms up and out for balance
        ch[f"{s}_elbow"] = 60 + 0 * f
    ch["root_pitch"] = -8 * extend
    ch["spine_flex"] += -6 * extend
    ch["spine_lat"] = 8 * extend * side


def _lunging(p, ch, st, rng, ex):
    f = p % 1
    side = np.where(_per_cycle(rng, p, 0, 1) < 0.5, 1, -1)  # 1 = right leg forward
    d = bump(f, 0.1, 0.4, 0.6, 0.9) * _per_cycle(rng, p, 0.7, 1.0)
    for s, sign in (("r", 1), ("l", -1)):
        fwd = (side == sign)
        ch[f"{s}_hip_flex"] = np.where(fwd, 85 * d, -30 * d)
        ch[f"{s}_knee"] = st["knee"] + np.where(fwd, 90 * d, 95 * d)
        ch[f"{s}_sh_elev"] = ch[f"{s}_sh_elev"] * (1 - d) + d * 30
        ch[f"{s}_sh_plane"] = ch[f"{s}_sh_plane"] * (1 - d) + d * 120  # hands to the hips
        ch[f"{s}_elbow"] = 12 + 80 * d
    ch["spine_flex"] += -4 * d


def _climbing(p, ch, st, rng, ex):
    """Climbing a ladder in place: the arm reaches high while the same-side knee lifts."""
    th = 2 * np.pi * p
    a = st["amp"]
    for s, phase in (("r", 0.0), ("l", np.pi)):
        u = 0.5 + 0.5 * np.sin(th + phase)
        ch[f"{s}_sh_elev"] = 120 + 50 * u * a
        ch[f"{s}_sh_plane"] = 20 + 15 * u
        ch[f"{s}_elbow"] = 90 - 70 * u
        ch[f"{s}_sh_twist"] = 40 * (1 - u)
        ch[f"{s}_hip_flex"] = 10 + 65 * u * a
        ch[f"{s}_knee"] = st["knee"] + 15 + 85 * u * a
    ch["spine_flex"] += 10
    ch["neck_flex"] = -20 + 0 * p


# action -> (function, cycles per second)
_ACTION_TABLE: Dict[str, tuple] = {
    "Walking": (_walking, 0.9), "Waving": (_waving, 0.2), "Squatting": (_squatting, 0.35),
    "Reaching": (_reaching, 0.35), "SittingDown": (_sitting_down, 0.13),
    "Boxing": (_boxing, 0.7), "Bending": (_bending, 0.3), "Jumping": (_jumping, 0.75),
    "Turning": (_turning, 0.3), "Pointing": (_pointing, 0.3),
    "Dancing": (_dancing, 0.5), "Stretching": (_stretching, 0.15), "Throwing": (_throwing, 0.3),
    "RandomMotion": (_random_motion, 0.4), "Mixed": (_mixed, 0.4),
    "Kicking": (_kicking, 0.3), "Lunging": (_lunging, 0.25), "Climbing": (_climbing, 0.4),
}


# ----------------------------------------------------------------------------- FK

def _clamp(ch: Channels) -> Channels:
    """Clamps channels to :data:`JOINT_LIMITS` (the shoulder's backward swing is tighter)."""
    out = dict(ch)
    for name, value in ch.items():
        key = name[2:] if name[:2] in ("l_", "r_") else name
        if key in JOINT_LIMITS:
            lo, hi = JOINT_LIMITS[key]
            out[name] = np.clip(value, lo, hi)
    for s in "lr":
        back = np.minimum(np.cos(np.radians(out[f"{s}_sh_plane"])), 0)
        out[f"{s}_sh_elev"] = np.minimum(out[f"{s}_sh_elev"], 175 + 115 * back)
    return out


def forward_kinematics(shape: body_lib.BodyShape, ch: Channels) -> np.ndarray:
    """World joints [T, 17, 3] (mm) of channels with the root at (0, 0, 0) before
    ``root_x/root_y/root_z`` offsets (present in ``ch`` or zero)."""
    ch = _clamp(ch)
    rad = {k: np.radians(v) for k, v in ch.items()}
    t_count = len(ch["root_yaw"])
    g = [None] * skeleton.NUM_JOINTS
    pos = np.zeros((t_count, skeleton.NUM_JOINTS, 3))
    g[0] = _rz(rad["root_yaw"]) @ _ry(rad["root_pitch"]) @ _rx(rad["root_roll"])
    pitch = rad["root_pitch"]

    def hip(s, sign):
        # Thigh flex is specified relative to vertical: add the pelvis pitch back.
        return (_ry(-(rad[f"{s}_hip_flex"] + pitch)) @ _rx(sign * rad[f"{s}_hip_abd"])
                @ _rz(sign * rad[f"{s}_hip_twist"]))

    def spine(frac):
        return (_ry(frac * rad["spine_flex"]) @ _rx(-frac * rad["spine_lat"])
                @ _rz(frac * rad["spine_twist"]))

    b = shape
    local = {
        1: hip("r", -1), 2: _ry(rad["r_knee"]), 4: hip("l", 1), 5: _ry(rad["l_knee"]),
        7: spine(0.5), 8: spine(0.5),
        9: _ry(rad["neck_flex"]) @ _rx(-rad["neck_lat"]) @ _rz(rad["neck_twist"]),
        11: _swing(rad["l_sh_elev"], rad["l_sh_plane"], 1.0) @ _rz(rad["l_sh_twist"]),
        12: _ry(-rad["l_elbow"]),
        14: _swing(rad["r_sh_elev"], rad["r_sh_plane"], -1.0) @ _rz(-rad["r_sh_twist"]),
        15: _ry(-rad["r_elbow"]),
    }
    offsets = {
        1: (0, -b.pelvis_width / 2, -15), 2: (0, 0, -b.thigh), 3: (0, 0, -b.shin),
        4: (0, b.pelvis_width / 2, -15), 5: (0, 0, -b.thigh), 6: (0, 0, -b.shin),
        7: (5, 0, b.spine), 8: (-10, 0, b.chest), 9: (35, 0, b.neck), 10: (-25, 0, b.head),
        11: (-10, b.shoulder_width / 2, -25), 12: (0, 0, -b.upper_arm), 13: (0, 0, -b.forearm),
        14: (-10, -b.shoulder_width / 2, -25), 15: (0, 0, -b.upper_arm), 16: (0, 0, -b.forearm),
    }
    for j in range(1, skeleton.NUM_JOINTS):
        par = skeleton.PARENTS[j]
        pos[:, j] = pos[:, par] + g[par] @ np.asarray(offsets[j], np.float64)
        g[j] = g[par] @ local[j] if j in local else g[par]
    return pos


# ----------------------------------------------------------------------------- root path

def _walk_path(rng, speed_mm_per_frame: np.ndarray, start_xy, heading0) -> tuple:
    """Integrates a wandering path that steers back toward the origin near the edge."""
    t_count = len(speed_mm_per_frame)
    wander = _smooth_noise(rng, t_count, 40, 0.012)
    xy = np.zeros((t_count, 2))
    yaw = np.zeros(t_count)
    p, h = np.asarray(start_xy, np.float64), float(heading0)
    for t in range(t_count):
        r = math.hypot(p[0], p[1])
        # Steer towards the centre, harder the nearer the edge, slowing down in sharp turns
        # (people do); turning at up to 3.5 rad/s keeps walkers inside the volume.
        pull = min(max((r - 0.3 * CAPTURE_RADIUS) / (0.3 * CAPTURE_RADIUS), 0.0), 1.0)
        slow = 1.0
        if pull > 0:
            diff = (math.atan2(-p[1], -p[0]) - h + math.pi) % (2 * math.pi) - math.pi
            h += 0.07 * pull * max(-1.0, min(1.0, diff / 0.6))
            slow = 1.0 - 0.5 * pull * abs(diff) / math.pi
        h += wander[t]
        step = speed_mm_per_frame[t] * slow
        p = p + step * np.array([math.cos(h), math.sin(h)])
        xy[t], yaw[t] = p, h
    return xy, np.degrees(yaw)


def generate_motion(subject: body_lib.Subject, action: str, num_frames: int,
                    rng: np.random.Generator, fps: float = FPS, style_seed: int = 0
                    ) -> np.ndarray:
    """A procedural take of ``action`` by ``subject``: world joints [T, 17, 3] in mm.

    Args:
      subject: body shape (and name, which fixes the motion style with ``style_seed``).
      action: one of :data:`ALL_ACTIONS`.
      num_frames: T.
      rng: per-take randomness (start position, heading, timing, targets).
      fps: frame rate of the output.
      style_seed: seed of the per-subject style (tempo, amplitude, handedness).
    """
    if action not in _ACTION_TABLE:
        raise ValueError(f"unknown action {action!r}; expected one of {list(ALL_ACTIONS)}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    st = _style(subject, style_seed)
    fn, freq = _ACTION_TABLE[action]
    t_count = num_frames
    env = _speed_envelope(rng, t_count, fps)
    tempo = st["tempo"] * (1 + _smooth_noise(rng, t_count, fps, 0.06)) * rng.uniform(0.9, 1.1)
    phase = np.cumsum(freq * tempo * env) / fps + rng.uniform(0, 1)
    ch = _rest(t_count, st)
    ex = {"leg": subject.body.thigh + subject.body.shin}
    fn(phase, ch, st, rng, ex)
    # Small always-on movements (breathing, sway, head) so nobody is a statue.
    ch["spine_flex"] = ch["spine_flex"] + 1.0 * np.sin(2 * np.pi * 0.25 * np.arange(t_count) / fps)
    ch["neck_twist"] = ch["neck_twist"] + _smooth_noise(rng, t_count, fps * 0.8, 4)
    ch["neck_flex"] = ch["neck_flex"] + _smooth_noise(rng, t_count, fps * 0.8, 3)
    for s in "lr":
        ch[f"{s}_elbow"] = ch[f"{s}_elbow"] + _smooth_noise(rng, t_count, fps * 0.5, 3)
        ch[f"{s}_sh_elev"] = ch[f"{s}_sh_elev"] + _smooth_noise(rng, t_count, fps * 0.5, 2)

    start = rng.uniform(-1, 1, 2) * CAPTURE_RADIUS * 0.45
    heading = rng.uniform(-180, 180)
    if action in _LOCOMOTION:
        stride = ex["stride"]
        speed = stride * np.gradient(phase) * (env > 0.02)
        xy, yaw = _walk_path(rng, speed, start, math.radians(heading))
        ch["root_yaw"] = ch["root_yaw"] + yaw
    else:
        ch["root_yaw"] = ch["root_yaw"] + heading + _smooth_noise(rng, t_count, fps * 2, 5)
        xy = None
    joints = forward_kinematics(subject.body, ch)
    ankle = 0.04 * subject.body.height
    if xy is None:
        # Keep the feet planted: move the root so the midpoint of the ankles stays put.
        mid = joints[:, [3, 6], :2].mean(1)
        drift = _smooth_noise(rng, t_count, fps * 3, 40)
        xy = start - mid + np.stack([drift, np.roll(drift, t_count // 2)], -1)
    joints[:, :, :2] += xy[:, None, :]
    floor = joints[:, [3, 6], 2].min(1)
    joints[:, :, 2] += (ankle - floor + np.clip(ch["root_lift"], 0, None))[:, None]
    return joints
