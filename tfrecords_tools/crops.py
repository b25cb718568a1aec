"""Square, person-centred crops and the exact crop <-> image coordinate transform.

A crop box (x0, y0, x1, y1) is in original-image pixel coordinates (OpenCV
convention, integer values at pixel centres), square (x1 - x0 == y1 - y0).
A crop of ``size`` pixels maps image coordinates as
    u_crop = (u - x0) * size / (x1 - x0),   v_crop = (v - y0) * size / (y1 - y0),
so crop pixel i samples the image at x0 + i * (x1 - x0) / size.
"""
from __future__ import annotations

import cv2
import numpy as np


def square_box(points_2d: np.ndarray, margin: float = 0.2, min_side: float = 16.0) -> np.ndarray:
    """Square box around 2D points [N, 2], enlarged by ``margin`` of its side on each side.

    Returns float64 (x0, y0, x1, y1).
    """
    pts = np.asarray(points_2d, np.float64).reshape(-1, 2)
    lo, hi = pts.min(0), pts.max(0)
    centre = (lo + hi) / 2
    side = max(float((hi - lo).max()) * (1 + 2 * margin), min_side)
    return np.concatenate([centre - side / 2, centre + side / 2])


def image_to_crop(points: np.ndarray, box, size: int) -> np.ndarray:
    """Maps image pixels [..., N, 2] into crop pixels, for boxes [..., 4] and a crop of ``size``."""
    box = np.asarray(box, np.float64)[..., None, :]
    return (np.asarray(points, np.float64) - box[..., 0:2]) * (size / (box[..., 2:4] - box[..., 0:2]))


def crop_to_image(points: np.ndarray, box, size: int) -> np.ndarray:
    """Inverse of :func:`image_to_crop`."""
    box = np.asarray(box, np.float64)[..., None, :]
    return np.asarray(points, np.float64) * ((box[..., 2:4] - box[..., 0:2]) / size) + box[..., 0:2]


def crop_matrix(box, size: int) -> np.ndarray:
    """2x3 affine matrix taking image pixels to crop pixels (for ``cv2.warpAffine``)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    return np.array([[sx, 0.0, -sx * x0], [0.0, sy, -sy * y0]])


def crop_image(image: np.ndarray, box, size: int, border_value=0) -> np.ndarray:
    """Crops and resizes ``image`` to ``size`` x ``size`` along ``box`` (pads outside)."""
    return cv2.warpAffine(image, crop_matrix(box, size), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
