"""Static backgrounds: a textured room ray-cast once per camera at full resolution.

All cameras see the same room (floor tiles, walls with doors, panels and a skirting band,
a ceiling), so backgrounds are geometrically consistent across views like a real capture
studio. The generator renders each camera's image once and warps crop regions out of it.
"""
from __future__ import annotations

import numpy as np

from tfrecords_tools import cameras as cameras_lib

# Room extent in world mm (the Human3.6M cameras sit inside it, about 5 m from the centre).
ROOM = {"x": (-4200.0, 4200.0), "y": (-6800.0, 6800.0), "z": (0.0, 3600.0)}


def _rays(cam: cameras_lib.Camera, scale: float) -> tuple:
    w, h = int(round(cam.width * scale)), int(round(cam.height * scale))
    u, v = np.meshgrid((np.arange(w, dtype=np.float32) + 0.5) / scale - 0.5,
                       (np.arange(h, dtype=np.float32) + 0.5) / scale - 0.5)
    d_cam = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], -1)
    d_world = d_cam @ cam.rotation.astype(np.float32)  # R^T d (row vectors)
    return cam.centre.astype(np.float32), d_world


def render_background(cam: cameras_lib.Camera, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """The room seen by ``cam``: uint8 RGB [H, W, 3] (``scale`` resizes the camera image)."""
    rng = np.random.default_rng([seed, 7919])
    origin, d = _rays(cam, scale)
    best_t = np.full(d.shape[:2], np.inf, np.float32)
    colour = np.zeros(d.shape, np.float32)
    wall_cols = rng.uniform(120, 220, (4, 3)).astype(np.float32)
    panel_cols = rng.uniform(40, 230, (4, 6, 3)).astype(np.float32)
    planes = [(2, ROOM["z"][0], "floor"), (2, ROOM["z"][1], "ceiling"),
              (0, ROOM["x"][0], 0), (0, ROOM["x"][1], 1), (1, ROOM["y"][0], 2),
              (1, ROOM["y"][1], 3)]
    for axis, value, kind in planes:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (value - origin[axis]) / d[..., axis]
        p = origin + t[..., None] * d
        inside = np.ones(t.shape, bool)
        for a, key in enumerate("xyz"):
            if a != axis:
                lo, hi = ROOM[key]
                inside &= (p[..., a] >= lo - 1) & (p[..., a] <= hi + 1)
        hit = (t > 0) & inside & (t < best_t)
        if not hit.any():
            continue
        best_t[hit] = t[hit]
        ph = p[hit]
        if kind == "floor":
            tile = ((np.floor(ph[:, 0] / 600) + np.floor(ph[:, 1] / 600)) % 2)[:, None]
            c = np.array([150, 140, 125], np.float32) * (1 - 0.15 * tile)
            grout = ((np.abs(ph[:, 0] % 600) < 15) | (np.abs(ph[:, 1] % 600) < 15))[:, None]
            c = np.where(grout, c * 0.7, c)
        elif kind == "ceiling":
            c = np.full((len(ph), 3), 205, np.float32)
        else:
            along = ph[:, 1 - (axis == 1)] if axis != 2 else ph[:, 0]
            height = ph[:, 2]
            c = np.broadcast_to(wall_cols[kind], (len(ph), 3)).copy()
            # Panels (doors, boards) at fixed places along the wall.
            slot = np.floor((along + 8000) / 1400).astype(int) % 6
            in_panel = ((along + 8000) % 1400 > 300) & ((along + 8000) % 1400 < 1100) & (
                height > 400) & (height < 2100 + 300 * (slot % 2))
            c[in_panel] = panel_cols[kind, slot[in_panel]]
            c[(height > 1000) & (height < 1080)] *= 0.6  # a band along the wall
            c[height < 120] = (60, 55, 50)  # skirting
        colour[hit] = c
    # Distance shading: farther surfaces a little darker.
    dist = np.where(np.isfinite(best_t), best_t * np.linalg.norm(d, axis=-1), 1e4)
    shade = np.clip(1.15 - dist / 12000.0, 0.6, 1.1)[..., None]
    return np.clip(colour * shade, 0, 255).astype(np.uint8)
