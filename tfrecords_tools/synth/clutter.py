"""Real-world clutter for a take: other people, moving objects, lighting changes, sensor noise.

What a real capture has and the plain generator lacks, for testing person finding (boxes,
background removal) where the truth is exact. :func:`plan_take` draws everything that moves
or changes in one take from its own random generator; :mod:`~tfrecords_tools.synth.render`
draws the bystanders and objects depth-sorted with the main person, then
:func:`apply_camera` changes the lighting and adds sensor noise to the finished image.
The static textured room (walls, floor, furniture) lives in
:func:`tfrecords_tools.synth.scene.render_background` (``textured=True``).

Nothing here is labelled: the records' joints stay the main person's.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import cv2
import numpy as np

from tfrecords_tools.synth import body as body_lib
from tfrecords_tools.synth import motion as motion_lib

LIGHTING = ("constant", "drift", "switch")
MAX_BYSTANDERS = 3
MAX_OBJECTS = 8
MAX_NOISE = 50.0
# Bystanders walk around a centre this far (mm) from the main person's mean position: near
# enough to cross in front of them in some views, far enough not to walk through them often.
BYSTANDER_OFFSET_MM = 1800.0
OBJECT_KINDS = ("box", "ball")


@dataclasses.dataclass(frozen=True)
class MovingObject:
    """A simple shape crossing the scene.

    Attributes:
      kind: ``"box"`` (a cube turning about the vertical) or ``"ball"``.
      centre: [T, 3] world mm per frame.
      size: side (box) or diameter (ball) in mm.
      yaw: [T] radians (box orientation).
      colour: RGB.
    """

    kind: str
    centre: np.ndarray
    size: float
    yaw: np.ndarray
    colour: tuple


@dataclasses.dataclass(frozen=True)
class TakeClutter:
    """Everything besides the main person that moves or changes during one take.

    Attributes:
      people: ((subject, joints [T, 17, 3] world mm), ...) of the bystanders.
      objects: the moving objects.
      gain: [T, 3] per-frame RGB gain of the whole image (lighting), or None (constant).
      noise: Gaussian sensor noise, standard deviation in grey levels (0: none).
      noise_seed: seeds the noise of each image (with its frame and view).
    """

    people: tuple = ()
    objects: tuple = ()
    gain: Optional[np.ndarray] = None
    noise: float = 0.0
    noise_seed: int = 0

    @property
    def empty(self) -> bool:
        return not self.people and not self.objects and self.gain is None and self.noise <= 0


def _lighting_gain(kind: str, num_frames: int, rng: np.random.Generator) -> Optional[np.ndarray]:
    """[T, 3] RGB gains: a smooth drift of brightness and colour, or a light switching."""
    if kind == "constant":
        return None
    t = np.linspace(0.0, 1.0, num_frames)
    sign = rng.choice([-1.0, 1.0])
    level = sign * rng.uniform(0.2, 0.35)            # overall brightness change
    tint = rng.uniform(-0.08, 0.08, 3)               # colour balance change
    if kind == "drift":
        ramp = 0.5 - 0.5 * np.cos(np.pi * t)         # smooth, over the whole take
    else:
        # A light switching on or off somewhere in the middle third, over 3 frames.
        t0 = rng.uniform(1 / 3, 2 / 3)
        ramp = np.clip((t - t0) * max(num_frames - 1, 1) / 3.0, 0.0, 1.0)
    return 1.0 + ramp[:, None] * (level + tint)[None, :]


def _bystander(main_joints: np.ndarray, index: int, num_frames: int, seed: int,
               rng: np.random.Generator) -> tuple:
    """Another person walking around near the main one (own body, look and path)."""
    subject = body_lib.make_subject(body_lib.extra_subject_name(90 + index), seed + 7001)
    joints = motion_lib.generate_motion(subject, "Walking", num_frames, rng, style_seed=seed)
    angle = rng.uniform(0, 2 * np.pi)
    target = main_joints[:, 0, :2].mean(0) + BYSTANDER_OFFSET_MM * np.array(
        [np.cos(angle), np.sin(angle)])
    joints = joints.copy()
    joints[:, :, :2] += target - joints[:, 0, :2].mean(0)
    return subject, joints


def _moving_object(main_joints: np.ndarray, num_frames: int, fps: float,
                   rng: np.random.Generator) -> MovingObject:
    """A box or ball crossing the scene in a straight line, passing the main person at a
    random moment and distance; some roll along the floor, some are carried or thrown."""
    kind = OBJECT_KINDS[int(rng.integers(len(OBJECT_KINDS)))]
    size = rng.uniform(150, 450)
    height = size / 2 if rng.uniform() < 0.4 else rng.uniform(500, 1800)
    heading = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(heading), np.sin(heading), 0.0])
    side = np.array([-direction[1], direction[0], 0.0])
    speed = rng.uniform(800, 2500) / fps                 # mm per frame
    closest = main_joints[:, 0].mean(0) * [1, 1, 0] + rng.uniform(500, 2500) * \
        rng.choice([-1.0, 1.0]) * side + [0, 0, height]
    t_pass = rng.uniform(0.2, 0.8) * num_frames
    t = np.arange(num_frames, dtype=np.float64)
    centre = closest[None] + ((t - t_pass) * speed)[:, None] * direction[None]
    yaw = rng.uniform(0, np.pi) + rng.uniform(-2, 2) / fps * t
    colour = tuple(int(c) for c in rng.uniform(30, 240, 3))
    return MovingObject(kind, centre, float(size), yaw, colour)


def plan_take(main_joints: np.ndarray, rng: np.random.Generator, *, bystanders: int = 0,
              moving_objects: int = 0, lighting: str = "constant", sensor_noise: float = 0.0,
              seed: int = 0, fps: float = motion_lib.FPS) -> TakeClutter:
    """Draws the clutter of one take around the main person's joints [T, 17, 3].

    Args:
      main_joints: the labelled person's world joints (bystanders and objects are placed
        relative to where they are).
      rng: the take's clutter generator (same generator, same clutter).
      bystanders: other people walking around (0 to :data:`MAX_BYSTANDERS`).
      moving_objects: boxes and balls crossing (0 to :data:`MAX_OBJECTS`).
      lighting: one of :data:`LIGHTING`.
      sensor_noise: Gaussian noise standard deviation in grey levels.
      seed: the dataset seed (fixes the bystanders' bodies and looks).
      fps: frame rate (object speeds are in mm/s).
    """
    t_count = len(main_joints)
    people = tuple(_bystander(main_joints, i, t_count, seed, rng) for i in range(bystanders))
    objects = tuple(_moving_object(main_joints, t_count, fps, rng) for _ in range(moving_objects))
    gain = _lighting_gain(lighting, t_count, rng)
    return TakeClutter(people, objects, gain, float(sensor_noise), int(rng.integers(2**31)))


def apply_camera(img_bgr: np.ndarray, clutter: TakeClutter, t: int, v: int) -> None:
    """Lighting gain of frame ``t`` and sensor noise (seeded by frame and view ``v``), in place."""
    if clutter.gain is not None:
        r, g, b = clutter.gain[t]
        cv2.multiply(img_bgr, (float(b), float(g), float(r), 0.0), dst=img_bgr)
    if clutter.noise > 0:
        rng = np.random.default_rng([clutter.noise_seed, t, v])
        noise = rng.standard_normal(img_bgr.shape, dtype=np.float32) * np.float32(clutter.noise)
        np.clip(img_bgr + noise, 0, 255, out=noise)
        img_bgr[...] = (noise + 0.5).astype(np.uint8)
