"""Static backgrounds: a textured room ray-cast once per camera at full resolution.

All cameras see the same room (floor tiles, walls with doors, panels and a skirting band,
a ceiling), so backgrounds are geometrically consistent across views like a real capture
studio. The generator renders each camera's image once and warps crop regions out of it.

``textured=True`` makes it a lived-in room: plaster and wood-grain texture on the walls and
floor, posters, and furniture-like boxes (cabinets, tables, shelves) along the walls, out of
the capture area so they never hide the person.
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


def _texture(p: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Multiplicative texture [N, 1] at world points [N, 3]: blotches, grain and speckle."""
    out = np.zeros(len(p), np.float32)
    for wavelength in (900.0, 300.0, 90.0, 25.0):
        k = rng.normal(size=3).astype(np.float32)
        k *= 2 * np.pi / wavelength / np.linalg.norm(k)
        out += np.sin(p @ k + rng.uniform(0, 2 * np.pi)).astype(np.float32) * (wavelength / 900) ** 0.3
    cell = np.floor(p / 12.0).astype(np.int64)
    h = (cell[:, 0] * 73856093 ^ cell[:, 1] * 19349663 ^ cell[:, 2] * 83492791) % 1000
    out += (h.astype(np.float32) / 1000 - 0.5) * 1.2
    return (1 + strength * out / 2.5)[:, None]


# Furniture-like boxes: (x range, y range, height) in mm, along the side walls (|x| > 2.9 m),
# so no camera of the Human3.6M rig (at |x| < 1.9 m) looks through one at the capture area.
_FURNITURE = (((2900, 4150), (-3000, -1800), 900), ((3300, 4150), (-800, 1400), 2000),
              ((2950, 4150), (2000, 3200), 750), ((-4150, -2900), (-2600, -1000), 1100),
              ((-4150, -3400), (300, 1500), 1800), ((-4150, -3000), (2300, 3600), 800))


def _furniture_hits(origin, d, best_t, colour, rng) -> None:
    """Ray-casts the furniture boxes (slab method) into ``best_t`` / ``colour`` in place."""
    for (x0, x1), (y0, y1), top in _FURNITURE:
        lo = np.array([x0, y0, 0.0], np.float32)
        hi = np.array([x1, y1, float(top)], np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            ta, tb = (lo - origin) / d, (hi - origin) / d
        t_near = np.nanmax(np.minimum(ta, tb), -1)
        t_far = np.nanmin(np.maximum(ta, tb), -1)
        hit = (t_near <= t_far) & (t_near > 0) & (t_near < best_t)
        if not hit.any():
            continue
        best_t[hit] = t_near[hit]
        p = origin + t_near[hit][:, None] * d[hit]
        base = rng.uniform(50, 200, 3).astype(np.float32)
        on_top = np.abs(p[:, 2] - top) < 2
        shade = np.where(on_top, 1.15, 0.85)[:, None]
        # Drawers / shelf boards every 350 mm on the sides.
        boards = (~on_top & (np.abs(p[:, 2] % 350) < 25))[:, None]
        colour[hit] = base * shade * np.where(boards, 0.6, 1.0) * _texture(p, rng, 0.25)


def render_background(cam: cameras_lib.Camera, seed: int = 0, scale: float = 1.0,
                      textured: bool = False) -> np.ndarray:
    """The room seen by ``cam``: uint8 RGB [H, W, 3] (``scale`` resizes the camera image).

    ``textured``: textured walls and floor, posters and furniture (see the module docstring).
    """
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
        if textured:
            tex_rng = np.random.default_rng([seed, 7919, axis, int(value) + 10000])
            c = c * _texture(ph, tex_rng, 0.35 if kind == "floor" else 0.2)
            if kind not in ("floor", "ceiling"):
                c = _posters(c, along, height, tex_rng)
        colour[hit] = c
    if textured:
        _furniture_hits(origin, d, best_t, colour, np.random.default_rng([seed, 104729]))
    # Distance shading: farther surfaces a little darker.
    dist = np.where(np.isfinite(best_t), best_t * np.linalg.norm(d, axis=-1), 1e4)
    shade = np.clip(1.15 - dist / 12000.0, 0.6, 1.1)[..., None]
    return np.clip(colour * shade, 0, 255).astype(np.uint8)


def _posters(c: np.ndarray, along: np.ndarray, height: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Rectangles of saturated colour with stripes (posters, boards) on a wall."""
    c = c.copy()
    for _ in range(5):
        a0, h0 = rng.uniform(-6000, 5000), rng.uniform(900, 2000)
        w, hh = rng.uniform(400, 1200), rng.uniform(300, 900)
        inside = (along > a0) & (along < a0 + w) & (height > h0) & (height < h0 + hh)
        col = rng.uniform(20, 250, 3).astype(np.float32)
        stripes = (np.floor((height - h0) / rng.uniform(40, 150)) % 2 == 0)
        c[inside] = np.where(stripes[inside, None], col, col[::-1])
    return c
