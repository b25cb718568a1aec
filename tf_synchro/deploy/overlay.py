"""Predict's outputs: the skeleton drawn on the frames, poses.json / poses.npz, smoothing.

Where the drawn skeleton goes. The model predicts root-relative joints in the camera frame
of the crop's camera (x right, y down, z forward, mm; the crop is an axis-aligned square of
the frame, so its axes are the frame's: no rotation, and training's horizontal flips are
undone in the labels). The crop box was made around the person's projected joints with a
margin (:func:`tfrecords_tools.crops.square_box`: the square of side ``max extent * (1 + 2
margin)`` centred on the joints' 2D bounding box), so the skeleton is put back by inverting
that rule:

* without intrinsics (weak perspective, :func:`fit_to_box`): the joints' (x, y) are scaled
  and shifted so that their bounding box is centred in the box and their larger extent is
  ``side / (1 + 2 margin)``;
* with intrinsics ``fx, fy, cx, cy`` (:func:`place_in_camera`): the root is placed at the
  camera-frame position where the perspective projection of the joints has exactly that
  bounding box (centre on the box centre, extent ``side / (1 + 2 margin)``; the root starts
  on the ray through the box centre at the depth of the matching size and is refined), and
  the joints are projected through the intrinsics.

Smoothing (``--smooth``): a One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) over each
joint coordinate, causal, at the video's frame rate (:class:`OneEuroFilter`).
"""
from __future__ import annotations

import json
import math
import os
from typing import Optional, Sequence

import cv2
import numpy as np

from tfrecords_tools import skeleton
from tfrecords_tools.runtime import cli, fileio


# ----------------------------------------------------------------------------- geometry

def _bounds(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre of the 2D bounding box of ``points`` [N, 2] and its larger side."""
    lo, hi = points.min(0), points.max(0)
    return (lo + hi) / 2, float((hi - lo).max())


def box_centre_side(box: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and side (the longer one) of a box (x0, y0, x1, y1)."""
    box = np.asarray(box, np.float64)
    return (box[:2] + box[2:]) / 2, float((box[2:] - box[:2]).max())


def fit_to_box(joints: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray:
    """Weak-perspective pixels ``[17, 2]`` of root-relative ``joints`` ``[17, 3]`` (mm):
    their (x, y) fitted to the box as the crop box was made around them."""
    xy = np.asarray(joints, np.float64)[:, :2]
    centre, extent = _bounds(xy)
    box_c, side = box_centre_side(box)
    scale = side / (1 + 2 * margin) / max(extent, 1e-6)
    return box_c + (xy - centre) * scale


def project(points_cam: np.ndarray, intrinsics: Sequence[float]) -> np.ndarray:
    """Pinhole pixels ``[N, 2]`` of camera-frame points ``[N, 3]``."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    p = np.asarray(points_cam, np.float64)
    return np.stack([fx * p[:, 0] / p[:, 2] + cx, fy * p[:, 1] / p[:, 2] + cy], 1)


def place_in_camera(joints: np.ndarray, box: np.ndarray, margin: float,
                    intrinsics: Sequence[float], iterations: int = 100
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Root position (camera frame, mm) whose projected skeleton fills ``box`` as the crop
    box was made, and the projected pixels ``[17, 2]``.

    Starts on the ray through the box centre at the depth where the skeleton's extent
    matches the box (weak perspective), then alternates depth (extent ratio) and lateral
    (centre offset) corrections; a few iterations reach 1e-3 px for people far more distant
    than they are deep.
    """
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    j = np.asarray(joints, np.float64)
    box_c, side = box_centre_side(box)
    target = side / (1 + 2 * margin)
    _, extent_mm = _bounds(j[:, :2])
    min_depth = float(max(-j[:, 2].min(), 0.0)) + 100.0  # Every joint in front of the camera.
    z = max(0.5 * (fx + fy) * max(extent_mm, 1.0) / target, min_depth)
    root = np.array([(box_c[0] - cx) / fx * z, (box_c[1] - cy) / fy * z, z])
    for _ in range(iterations):
        centre, extent = _bounds(project(j + root, intrinsics))
        shift = box_c - centre
        ratio = extent / target
        if abs(ratio - 1) < 1e-7 and np.abs(shift).max() < 1e-4:
            break
        # Lateral: the pixel offset at the root's depth. Depth: extent ~ 1 / depth.
        root[0] += shift[0] / fx * root[2]
        root[1] += shift[1] / fy * root[2]
        new_z = max(root[2] * ratio, min_depth)
        root[:2] *= new_z / root[2]  # Keep the root's ray while changing its depth.
        root[2] = new_z
    return root, project(j + root, intrinsics)


def skeleton_pixels(joints: np.ndarray, box: np.ndarray, margin: float,
                    intrinsics: Optional[Sequence[float]] = None) -> np.ndarray:
    """Pixels ``[17, 2]`` where the skeleton is drawn (see the module docstring)."""
    if intrinsics is None:
        return fit_to_box(joints, box, margin)
    return place_in_camera(joints, box, margin, intrinsics)[1]


def read_intrinsics(spec: str, camera: Optional[str] = None) -> np.ndarray:
    """``fx, fy, cx, cy`` from ``--intrinsics``: four numbers, or a ``calibration.json``
    (the rig format: ``{"cameras": {"<id>": {"fx", "fy", "cx", "cy", ...}}}``; the camera
    named ``camera`` (the video's file stem), else its only camera). Distortion is ignored.

    Raises:
      cli.UsageError: neither four positive numbers nor an existing file.
      cli.DataError: the file is not such a JSON, or the camera is not in it.
    """
    parts = spec.split(",")
    if len(parts) == 4 and not os.path.exists(spec):
        try:
            values = np.array([float(p) for p in parts])
        except ValueError:
            values = np.zeros(4)
        if not (np.isfinite(values).all() and values[0] > 0 and values[1] > 0):
            raise cli.UsageError(f"--intrinsics={spec}: expected fx,fy,cx,cy in pixels "
                                 f"(fx, fy > 0) or a calibration.json")
        return values
    if not os.path.isfile(spec):
        raise cli.UsageError(f"--intrinsics={spec}: expected fx,fy,cx,cy in pixels or an "
                             f"existing calibration.json")
    try:
        with open(spec) as f:
            cams = json.load(f)["cameras"]
        name = camera if camera in cams else (next(iter(cams)) if len(cams) == 1 else None)
        if name is None:
            raise cli.DataError(f"--intrinsics={spec}: no camera {camera!r} (the video's file "
                                f"name) among {sorted(cams)}")
        values = np.array([float(cams[name][k]) for k in ("fx", "fy", "cx", "cy")])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError,
            AttributeError, StopIteration) as e:
        raise cli.DataError(f"--intrinsics={spec}: expected a calibration.json "
                            f"{{\"cameras\": {{\"<id>\": {{\"fx\", \"fy\", \"cx\", \"cy\", "
                            f"...}}}}}} ({type(e).__name__}: {e})") from None
    if not (np.isfinite(values).all() and values[0] > 0 and values[1] > 0):
        raise cli.DataError(f"--intrinsics={spec}: camera {name!r} has fx, fy, cx, cy = "
                            f"{values.tolist()}; expected finite values, fx, fy > 0")
    return values


# ----------------------------------------------------------------------------- drawing

def draw_overlay(frame: np.ndarray, box: np.ndarray, joints: np.ndarray, found: bool,
                 margin: float, intrinsics: Optional[Sequence[float]] = None) -> np.ndarray:
    """RGB frame with the box (green: person found, orange: not) and the predicted
    skeleton on the person (left limbs blue, right red, centre white)."""
    out = frame.copy()
    colour = (0, 200, 0) if found else (255, 140, 0)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    thick = max(1, int(round(max(frame.shape[:2]) / 400)))
    cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
    uv = skeleton_pixels(joints, box, margin, intrinsics)
    if not np.isfinite(uv).all():
        return out
    for parent, child in skeleton.BONES:
        c = ((0, 0, 255) if child in skeleton.LEFT_JOINTS else
             (255, 0, 0) if child in skeleton.RIGHT_JOINTS else (255, 255, 255))
        a = tuple(int(round(v)) for v in uv[parent])
        b = tuple(int(round(v)) for v in uv[child])
        cv2.line(out, a, b, c, thick + 1)
    return out


class OverlayWriter:
    """Writes overlay frames to an .mp4 (renamed into place on close) or PNGs in a folder."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps = path, fps or 25.0
        self.to_video = path.lower().endswith(".mp4")
        self._tmp = f"{path}.tmp-{os.getpid()}.mp4"
        self._writer = None
        if not self.to_video:
            os.makedirs(path, exist_ok=True)

    def write(self, index: int, name: str, frame_rgb: np.ndarray) -> None:
        bgr = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
        if not self.to_video:
            stem = os.path.splitext(os.path.basename(name))[0]
            tmp = os.path.join(self.path, f".tmp-{stem}.png")
            cv2.imwrite(tmp, bgr)
            os.replace(tmp, os.path.join(self.path, f"{index:06d}_{stem}.png"))
            return
        if self._writer is None:
            h, w = bgr.shape[:2]
            self._size = (w, h)
            self._writer = cv2.VideoWriter(self._tmp, cv2.VideoWriter_fourcc(*"mp4v"),
                                           self.fps, self._size)
            if not self._writer.isOpened():
                raise cli.DataError(f"--overlay={self.path}: OpenCV cannot write an mp4 there")
        if (bgr.shape[1], bgr.shape[0]) != self._size:  # Images of several sizes.
            bgr = cv2.resize(bgr, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(bgr)

    def close(self, ok: bool) -> None:
        if self._writer is not None:
            self._writer.release()
            if ok:
                os.replace(self._tmp, self.path)
        if os.path.exists(self._tmp):
            os.remove(self._tmp)


# ----------------------------------------------------------------------------- smoothing

def _alpha(cutoff: np.ndarray, dt: float) -> np.ndarray:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter (Casiez et al. 2012) of an array signal, element by element, causal.

    An exponential low-pass whose cutoff rises with the signal's speed: ``cutoff =
    min_cutoff + beta * |dx/dt|`` (Hz; dx/dt itself low-passed at ``d_cutoff``), so a still
    joint is smoothed hard (jitter drops) and a moving one lags little.

    Args:
      fps: samples per second.
      min_cutoff: cutoff at rest (Hz); lower smooths more.
      beta: cutoff increase per unit/s of speed (joints: per mm/s); higher lags less.
      d_cutoff: cutoff of the speed estimate (Hz).
    """

    def __init__(self, fps: float, min_cutoff: float = 1.0, beta: float = 0.004,
                 d_cutoff: float = 1.0):
        if not (fps > 0 and min_cutoff > 0 and beta >= 0 and d_cutoff > 0):
            raise ValueError(f"One-Euro filter: fps={fps}, min_cutoff={min_cutoff}, "
                             f"beta={beta}, d_cutoff={d_cutoff}; expected fps, cutoffs > 0 "
                             f"and beta >= 0")
        self.dt, self.min_cutoff, self.beta, self.d_cutoff = 1.0 / fps, min_cutoff, beta, d_cutoff
        self._x: Optional[np.ndarray] = None
        self._dx: Optional[np.ndarray] = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            return x.copy()
        dx = (x - self._x) / self.dt
        a_d = _alpha(np.asarray(self.d_cutoff), self.dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        a = _alpha(self.min_cutoff + self.beta * np.abs(self._dx), self.dt)
        self._x = a * x + (1 - a) * self._x
        return self._x.copy()


def smooth(values: np.ndarray, fps: float, min_cutoff: float, beta: float,
           d_cutoff: float) -> np.ndarray:
    """The One-Euro filtered sequence of ``values`` ``[N, ...]`` (frame order)."""
    f = OneEuroFilter(fps, min_cutoff, beta, d_cutoff)
    return np.stack([f(v) for v in values]).astype(np.asarray(values).dtype)


# ----------------------------------------------------------------------------- output files

ARRAY_KEYS = ("joints3d", "joints3d_raw", "boxes", "person_found", "names")


def write_output(path: str, result: dict) -> None:
    """Writes the result as JSON (one entry per frame) or NPZ (arrays), atomically.

    Both carry the per-frame arrays of :data:`ARRAY_KEYS` present in ``result`` and the
    same run information (every other key; in the NPZ as a JSON string ``info``).
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    info = {k: v for k, v in result.items() if k not in ARRAY_KEYS}
    if path.lower().endswith(".npz"):
        tmp = f"{path}.tmp-{os.getpid()}.npz"
        arrays = {k: np.asarray(result[k]) for k in ARRAY_KEYS if k in result}
        np.savez(tmp, **arrays, joint_names=np.asarray(skeleton.JOINT_NAMES),
                 info=np.asarray(json.dumps(info, sort_keys=True)))
        os.replace(tmp, path)
        return
    raw = result.get("joints3d_raw")
    doc = dict(info)
    doc["frames"] = []
    for i, (n, b, f, j) in enumerate(zip(result["names"], result["boxes"],
                                         result["person_found"], result["joints3d"])):
        entry = {"index": i, "name": n, "box": [round(float(v), 2) for v in b],
                 "person_found": bool(f),
                 "joints3d": np.round(np.asarray(j, np.float64), 2).tolist()}
        if raw is not None:
            entry["joints3d_raw"] = np.round(np.asarray(raw[i], np.float64), 2).tolist()
        doc["frames"].append(entry)
    fileio.write_json_atomic(path, doc)
