"""Miniature Human3.6M and rig folders for the converter tests (built, never downloaded).

Each fixture video shows a procedurally moving person (``tfrecords_tools.synth.motion``)
in front of a *static textured* background with a strong red cast (so that colour-order
mistakes and background removal are both visible), seen by the real Human3.6M cameras
with intrinsics scaled to a small frame. The ground truth the tests compare against is
computed here independently of the converters (own intrinsics scaling, own projection
bookkeeping).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import cv2
import numpy as np

from tfrecords_tools import cameras, dataset_io, h36m_calibration, schema, skeleton
from tfrecords_tools.synth import body as synth_body
from tfrecords_tools.synth import motion as synth_motion
from tfrecords_tools.synth import render as synth_render

FPS = 50
VIDEO_SIZE = 200          # fixture videos are VIDEO_SIZE x VIDEO_SIZE


# ---------------------------------------------------------------------------- cameras


def fixture_camera(subject: str, camera_id: str, width: int = VIDEO_SIZE,
                   height: int = VIDEO_SIZE) -> cameras.Camera:
    """The real calibrated camera, intrinsics rescaled to a ``width`` x ``height`` video.

    Written out here (not via h36m_calibration.scale_camera) so the converter's own
    scaling is checked against an independent implementation.
    """
    full = h36m_calibration.camera(subject, camera_id)
    sx, sy = width / full.width, height / full.height
    return dataclasses.replace(full, fx=full.fx * sx, fy=full.fy * sy,
                               cx=(full.cx + 0.5) * sx - 0.5, cy=(full.cy + 0.5) * sy - 0.5,
                               width=width, height=height)


# ---------------------------------------------------------------------------- images


def background_image(seed: int, width: int = VIDEO_SIZE, height: int = VIDEO_SIZE) -> np.ndarray:
    """Static textured scene, RGB uint8, red-dominant everywhere (R - B >= 60)."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 1, (height // 10 + 1, width // 10 + 1))
    tex = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.uniform(0, 1, (height, width))
    img = np.zeros((height, width, 3), np.float64)
    img[..., 0] = 150 + 70 * tex + 20 * fine
    img[..., 1] = 30 + 40 * tex
    img[..., 2] = 20 + 30 * (1 - tex)
    # A few rectangles ("furniture") so the scene has edges, like a real room.
    for _ in range(6):
        x0, y0 = rng.integers(0, width - 20), rng.integers(0, height - 20)
        w, h = rng.integers(8, 40, 2)
        img[y0:y0 + h, x0:x0 + w] = (rng.uniform(140, 230), rng.uniform(20, 70),
                                     rng.uniform(10, 50))
    return np.clip(img, 0, 255).astype(np.uint8)


def _contrasts(rgb) -> bool:
    """True for a colour far from the red-cast background (some channel differs by > 40)."""
    return rgb[1] > 90 or rgb[2] > 90 or rgb[0] < 100


def fixture_subject(k: int) -> synth_body.Subject:
    """The k-th synthetic subject whose clothes all contrast with the red background, so
    that "the person was kept" is a fair expectation of background removal. Not cached:
    the search takes milliseconds, and tests share no state through it."""
    found = -1
    for seed in range(1000):
        subject = synth_body.make_subject(f"fixture{seed}", seed)
        look = subject.look
        colours = [look.shirt, look.trousers, look.pattern_colour, look.shoes, look.hair,
                   look.strap_colour] + ([look.stripe_colour] if look.stripe_side else [])
        if all(_contrasts(c) for c in colours):
            found += 1
            if found == k:
                return subject
    raise RuntimeError(f"fewer than {k + 1} contrasting subjects among 1000 seeds")


def render_frame(joints_world: np.ndarray, camera: cameras.Camera, subject: synth_body.Subject,
                 background: Optional[np.ndarray]) -> np.ndarray:
    """Full RGB frame of ``subject`` over ``background`` (black if None), by the project's
    synthetic renderer (which projects with ``camera``, distortion included)."""
    return synth_render.render_view(joints_world, camera, subject, background=background)


def person_mask(joints_world: np.ndarray, camera: cameras.Camera,
                subject: synth_body.Subject) -> np.ndarray:
    """Boolean [H, W]: pixels the person covers (rendered over black)."""
    return render_frame(joints_world, camera, subject, None).max(-1) > 0


def write_video(path: str, frames_rgb, fps: float = FPS) -> None:
    """Writes RGB frames as an mp4 ('mp4v') with OpenCV (which expects BGR)."""
    frames_rgb = list(frames_rgb)
    h, w = frames_rgb[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for f in frames_rgb:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


# ---------------------------------------------------------------------------- poses


def to_raw32(joints17: np.ndarray) -> np.ndarray:
    """[T, 17, 3] -> [T, 32, 3] in the raw Human3.6M order.

    The 15 joints the converter must drop are put 10 m away, so picking a wrong
    index shows up as a wildly wrong crop box.
    """
    raw = np.zeros((len(joints17), 32, 3))
    raw[:] = joints17[:, :1] + np.array([10000.0, 10000.0, 0.0])
    raw[:, skeleton.H36M_32_TO_17] = joints17
    return raw


def write_pose_cdf(path: str, joints17: np.ndarray, variable: str = "Pose",
                   shape: Optional[tuple] = None) -> None:
    """D3_Positions-style CDF: variable ``Pose``, [1, T, 96] world mm (float32 like the release)."""
    from cdflib.cdfwrite import CDF
    data = to_raw32(joints17).reshape(1, len(joints17), 96).astype(np.float32)
    if shape is not None:
        data = data.reshape(shape)
    if os.path.exists(path):
        os.remove(path)
    cdf = CDF(path, cdf_spec={"Majority": "Row_major", "Compressed": 0})
    cdf.write_var({"Variable": variable, "Data_Type": CDF.CDF_FLOAT, "Num_Elements": 1,
                   "Rec_Vary": True, "Dim_Sizes": list(data.shape[1:])}, var_data=data)
    cdf.close()


def make_motion(subject: synth_body.Subject, seed: int, num_frames: int,
                action: str = "Walking", still: Optional[tuple] = None,
                speedup: int = 3) -> np.ndarray:
    """Synthetic world joints [T, 17, 3]; frames ``still[0]:still[1]`` are frozen copies.

    The motion is played ``speedup`` times faster than generated, so that in a few
    dozen frames the person walks clear of where they started (a median background
    needs to see every pixel uncovered in some frames).
    """
    joints = synth_motion.generate_motion(subject, action, num_frames * speedup,
                                          np.random.default_rng(seed))[::speedup]
    if still is not None:
        a, b = still
        joints[a:b] = joints[a]
    return joints


# ---------------------------------------------------------------------------- reading back


def read_clips(data_dir: str) -> list:
    """Every record of a finished dataset as :class:`schema.Clip` (numpy)."""
    import tensorflow as tf
    out = []
    for path in dataset_io.shard_paths(data_dir):
        for rec in tf.data.TFRecordDataset(path):
            out.append(schema.decode_clip(rec.numpy(), where=path))
    return out


def decode(jpeg: bytes) -> np.ndarray:
    import tensorflow as tf
    return tf.io.decode_jpeg(jpeg).numpy()  # The pipelines' decoder: RGB in, RGB out.


def stored_camera(clip, v: int) -> cameras.Camera:
    """Camera ``v`` of a record, rebuilt from the stored parameters."""
    fx, fy, cx, cy = clip.intrinsics[v]
    w, h = clip.image_wh[v]
    return cameras.Camera(clip.camera_ids[v], fx, fy, cx, cy, int(w), int(h),
                          clip.rotation[v].astype(np.float64),
                          clip.translation[v].astype(np.float64),
                          clip.distortion[v].astype(np.float64))


# ---------------------------------------------------------------------------- Human3.6M tree


@dataclasses.dataclass
class H36MFixture:
    """What was written, per sequence id ("S1/Directions 1") and camera id."""

    root: str
    joints: dict = dataclasses.field(default_factory=dict)    # [T, 17, 3] world mm (the CDF)
    subjects: dict = dataclasses.field(default_factory=dict)  # synthetic person drawn
    cameras: dict = dataclasses.field(default_factory=dict)   # {camera: Camera used to render}
    frames: dict = dataclasses.field(default_factory=dict)    # {camera: [n, H, W, 3] RGB drawn}
    backgrounds: dict = dataclasses.field(default_factory=dict)  # {camera: RGB}
    still: dict = dataclasses.field(default_factory=dict)     # (start, end) frozen frames


# (subject, file stem, cameras with a video, frames, notes). Exercises every quirk:
#   S1 "Directions 1": the normal case; frames 14..25 frozen (motion filter).
#   S1 "TakingPhoto":  S1's long action name; 60457274's video missing, 58860488's unreadable.
#   S9 "WalkDog 1":    the other subjects' short name for WalkingDog.
#   S9 "Greeting":     a known damaged S9 sequence (skipped by default).
#   S11 "Directions":  camera 54138969 corrupt (garbage bytes); 60457274 is 4 frames short.
#   S11 "Phoning":     CDF with another variable name.
ALL_CAMS = h36m_calibration.CAMERA_IDS
H36M_SEQUENCES = (
    ("S1", "Directions 1", ALL_CAMS, 48, "normal"),
    ("S1", "TakingPhoto", ALL_CAMS[:3], 24, "missing_and_unreadable"),
    ("S9", "WalkDog 1", ALL_CAMS[1:3], 24, "normal"),
    ("S9", "Greeting", ALL_CAMS[:2], 12, "damaged"),
    ("S11", "Directions", ALL_CAMS, 24, "corrupt_and_short"),
    ("S11", "Phoning", ALL_CAMS[:2], 12, "bad_cdf"),
)
GARBAGE_VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8


def build_h36m_tree(root: str, size: int = VIDEO_SIZE) -> H36MFixture:
    """Writes the miniature Human3.6M tree under ``root`` and returns its ground truth."""
    fx = H36MFixture(root)
    for i, (subject_id, stem, cams, t, note) in enumerate(H36M_SEQUENCES):
        vdir = os.path.join(root, subject_id, "Videos")
        pdir = os.path.join(root, subject_id, "MyPoseFeatures", "D3_Positions")
        os.makedirs(vdir, exist_ok=True)
        os.makedirs(pdir, exist_ok=True)
        seq = f"{subject_id}/{stem}"
        person = fixture_subject(i % 4)
        still = (14, 26) if t >= 40 else None
        joints = make_motion(person, 100 + i, t, "Walking", still)
        fx.joints[seq], fx.still[seq], fx.subjects[seq] = joints, still, person
        write_pose_cdf(os.path.join(pdir, stem + ".cdf"), joints,
                       variable="Positions" if note == "bad_cdf" else "Pose")
        fx.cameras[seq], fx.frames[seq], fx.backgrounds[seq] = {}, {}, {}
        for c, cam_id in enumerate(cams):
            path = os.path.join(vdir, f"{stem}.{cam_id}.mp4")
            if ((note == "corrupt_and_short" and cam_id == "54138969")
                    or (note == "missing_and_unreadable" and cam_id == "58860488")):
                with open(path, "wb") as f:
                    f.write(GARBAGE_VIDEO)
                continue
            cam = fixture_camera(subject_id, cam_id, size, size)
            bg = background_image(1000 * i + c, size, size)
            n = t - 4 if (note == "corrupt_and_short" and cam_id == "60457274") else t
            frames = np.stack([render_frame(joints[k], cam, person, bg) for k in range(n)])
            write_video(path, frames)
            fx.cameras[seq][cam_id], fx.frames[seq][cam_id] = cam, frames
            fx.backgrounds[seq][cam_id] = bg
    return fx


# ---------------------------------------------------------------------------- rig tree


@dataclasses.dataclass
class RigFixture:
    """Ground truth of the miniature rig, per sequence folder and camera."""

    root: str
    joints: dict = dataclasses.field(default_factory=dict)   # [N, 17, 3] at instants 0..N-1
    subjects: dict = dataclasses.field(default_factory=dict)
    cameras: dict = dataclasses.field(default_factory=dict)  # {camera: Camera}
    offsets: dict = dataclasses.field(default_factory=dict)  # {camera: offset}
    frames: dict = dataclasses.field(default_factory=dict)   # {camera: [n, H, W, 3] RGB drawn}
    backgrounds: dict = dataclasses.field(default_factory=dict)


RIG_CAMERAS = ("left", "right", "back")
RIG_STILL = (14, 24)


def build_rig_tree(root: str, size: int = VIDEO_SIZE, num_frames: int = 36) -> RigFixture:
    """Writes a miniature rig folder.

    * ``dance/``: three cameras, ``calibration.json``, ``sequence.json`` (subject P1;
      frame offsets: ``right`` started 5 frames early, ``back`` 2 frames); ``back``'s
      video is 3 frames longer than needed (different lengths); the person freezes
      during instants ``RIG_STILL``.
    * ``walk/``: two cameras, no calibration, no sequence.json.
    """
    fx = RigFixture(root)
    rig_cams = dict(zip(RIG_CAMERAS, ("54138969", "55011271", "60457274")))
    specs = {"dance": (RIG_CAMERAS, {"left": 0, "right": 5, "back": 2}, True),
             "walk": (RIG_CAMERAS[:2], {}, False)}
    for s, (seq, (cams, offsets, calibrated)) in enumerate(specs.items()):
        sdir = os.path.join(root, seq)
        os.makedirs(sdir, exist_ok=True)
        person = fixture_subject(s)
        joints = make_motion(person, 300 + s, num_frames, "Walking",
                             RIG_STILL if s == 0 else None)
        fx.joints[seq], fx.offsets[seq], fx.subjects[seq] = joints, offsets, person
        fx.cameras[seq], fx.frames[seq], fx.backgrounds[seq] = {}, {}, {}
        calib = {}
        for c, name in enumerate(cams):
            cam = dataclasses.replace(fixture_camera("S1", rig_cams[name], size, size),
                                      camera_id=name)
            bg = background_image(5000 + 10 * s + c, size, size)
            off = offsets.get(name, 0)
            extra = 3 if name == "back" else 0
            # Video frame i shows instant i - off (clamped to the motion's range).
            frames = np.stack([render_frame(joints[min(max(i - off, 0), num_frames - 1)], cam,
                                            person, bg)
                               for i in range(num_frames + off + extra)])
            write_video(os.path.join(sdir, f"{name}.mp4"), frames)
            fx.cameras[seq][name], fx.frames[seq][name] = cam, frames
            fx.backgrounds[seq][name] = bg
            calib[name] = {"fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy,
                           "width": cam.width, "height": cam.height,
                           "rotation": cam.rotation.tolist(),
                           "translation": cam.translation.tolist(),
                           "distortion": list(cam.distortion)}
        if calibrated:
            with open(os.path.join(sdir, "calibration.json"), "w") as f:
                json.dump({"cameras": calib}, f, indent=1)
            with open(os.path.join(sdir, "sequence.json"), "w") as f:
                json.dump({"subject": "P1", "action": "Dance", "frame_offsets": offsets}, f)
    return fx
