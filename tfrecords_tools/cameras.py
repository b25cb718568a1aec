"""Pinhole cameras with OpenCV conventions, and the Human3.6M rig.

Conventions (used by every writer, reader and test):
  * World coordinates in millimetres, z up (Human3.6M).
  * ``rotation`` R and ``translation`` t map world to camera: X_cam = R @ X + t.
  * Camera frame: x right, y down, z forward (OpenCV). Pixel coordinates have
    integer values at pixel centres (OpenCV), u = fx * x / z + cx.
  * ``distortion`` holds OpenCV's (k1, k2, p1, p2, k3).
"""
from __future__ import annotations

import dataclasses

import numpy as np

H36M_CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")

# Intrinsics from the released calibration (docs/DESIGN.md §2): fx, fy, cx, cy, width, height.
H36M_INTRINSICS = {
    "54138969": (1145.0494, 1143.7811, 512.5415, 515.4515, 1000, 1002),
    "55011271": (1149.6757, 1147.5917, 508.8486, 508.0649, 1000, 1000),
    "58860488": (1149.1407, 1148.7990, 519.8159, 501.4026, 1000, 1000),
    "60457274": (1145.5114, 1144.7739, 514.9682, 501.8820, 1000, 1002),
}

# Subject S1 extrinsics (docs/DESIGN.md §2): quaternion (w, x, y, z) rotating camera
# coordinates into world coordinates, and camera centre in world mm.
H36M_S1_EXTRINSICS = {
    "54138969": ((0.1407056, -0.1500702, -0.7552408, 0.6223280), (1841.107, 4955.285, 1563.445)),
    "55011271": ((0.6157188, -0.7648363, -0.1483383, 0.1179474), (1761.279, -5078.007, 1606.265)),
    "58860488": ((0.1465147, -0.1464785, 0.7653024, -0.6094176), (-1846.778, 5215.046, 1491.972)),
    "60457274": ((0.5834008, -0.7853162, 0.1454882, -0.1474959), (-1794.790, -3722.699, 1574.893)),
}


def quaternion_to_matrix(q) -> np.ndarray:
    """Rotation matrix of a quaternion (w, x, y, z); the quaternion is normalised first."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


@dataclasses.dataclass(frozen=True)
class Camera:
    """A calibrated camera. See the module docstring for conventions."""

    camera_id: str
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    rotation: np.ndarray       # [3, 3] world -> camera
    translation: np.ndarray    # [3] mm
    distortion: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(5))  # k1, k2, p1, p2, k3

    @classmethod
    def from_quaternion_centre(cls, camera_id, intrinsics, q_cam_to_world, centre,
                               distortion=None) -> "Camera":
        """Builds a camera from Human3.6M-style extrinsics (camera->world q, centre c)."""
        fx, fy, cx, cy, width, height = intrinsics
        r_cam_to_world = quaternion_to_matrix(q_cam_to_world)
        rotation = r_cam_to_world.T
        translation = -rotation @ np.asarray(centre, dtype=np.float64)
        return cls(str(camera_id), float(fx), float(fy), float(cx), float(cy), int(width),
                   int(height), rotation, translation,
                   np.zeros(5) if distortion is None else np.asarray(distortion, np.float64))

    @property
    def intrinsics(self) -> np.ndarray:
        """(fx, fy, cx, cy) as float64."""
        return np.array([self.fx, self.fy, self.cx, self.cy])

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 intrinsic matrix K."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    @property
    def centre(self) -> np.ndarray:
        """Camera centre in world coordinates (mm)."""
        return -self.rotation.T @ self.translation

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """Maps world points [..., 3] (mm) to camera coordinates [..., 3] (mm)."""
        return np.asarray(points, np.float64) @ self.rotation.T + self.translation

    def camera_to_world(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`world_to_camera`."""
        return (np.asarray(points, np.float64) - self.translation) @ self.rotation

    def project_camera(self, points_cam: np.ndarray) -> np.ndarray:
        """Projects camera-frame points [..., 3] to pixels [..., 2], with distortion."""
        p = np.asarray(points_cam, np.float64)
        z = np.maximum(p[..., 2], 1e-6)
        x, y = p[..., 0] / z, p[..., 1] / z
        k1, k2, p1, p2, k3 = self.distortion
        if np.any(self.distortion):
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
            x, y = (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                    y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)
        return np.stack([self.fx * x + self.cx, self.fy * y + self.cy], axis=-1)

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """Projects world points [..., 3] (mm) to pixels [..., 2]."""
        return self.project_camera(self.world_to_camera(points_world))


def h36m_rig(extrinsics=None) -> list[Camera]:
    """The four Human3.6M cameras, with S1's extrinsics unless others are given.

    Args:
      extrinsics: optional {camera_id: (q_cam_to_world (w, x, y, z), centre_mm)}.
    """
    extrinsics = extrinsics or H36M_S1_EXTRINSICS
    return [Camera.from_quaternion_centre(cid, H36M_INTRINSICS[cid], *extrinsics[cid])
            for cid in H36M_CAMERA_IDS]
