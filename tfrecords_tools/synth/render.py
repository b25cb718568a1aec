"""Fast painter's-algorithm renderer of a synthetic person seen by a calibrated camera.

The body is built in 3D once per frame from the 17 joints (tapered limb capsules, a torso
with width and depth, a head with a face on its front, hands, shoes pointing forward) and
projected into every view. Parts are drawn far to near (camera depth); limbs get cylinder
shading (a dark rim, the base colour, a highlight on the side facing a fixed world light)
and everything gets darker with depth, so images carry 3D cues. Drawing happens directly
in output pixels (a crop or the full image) with OpenCV primitives at 1/16 pixel precision.

Images are produced in **BGR** order internally (OpenCV's order, so JPEG encoding needs no
conversion and stores the intended RGB colours); :func:`render_view` returns RGB.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from tfrecords_tools import cameras as cameras_lib
from tfrecords_tools.synth import body as body_lib
from tfrecords_tools.synth import clutter as clutter_lib

_SHIFT = 4                     # fractional bits of OpenCV drawing coordinates
_ONE = 1 << _SHIFT
_LINE = cv2.LINE_AA
_INNER = cv2.LINE_8
_LIGHT = np.array([0.35, -0.45, 0.82])  # world direction towards the light (z up)
_LIGHT /= np.linalg.norm(_LIGHT)
_EYE_BGR = [40, 30, 30]

# Limb capsules: (name, joint a, joint b, radius at a, radius at b) in mm for girth 1.
_LIMBS = (
    ("r_thigh", 1, 2, 80, 56), ("r_shin", 2, 3, 52, 38),
    ("l_thigh", 4, 5, 80, 56), ("l_shin", 5, 6, 52, 38),
    ("l_upper_arm", 11, 12, 50, 40), ("l_forearm", 12, 13, 38, 30),
    ("r_upper_arm", 14, 15, 50, 40), ("r_forearm", 15, 16, 38, 30),
)
_BULGE_CHILD = {"l_upper_arm": 13, "r_upper_arm": 16, "l_thigh": 6, "r_thigh": 3}

# Item kinds in the painter's list.
_CAPSULE, _HEAD, _HAND, _TORSO, _BAG = range(5)


def _bgr(rgb) -> np.ndarray:
    return np.asarray(rgb, np.float64)[::-1]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


class _Body3D:
    """3D primitives of one person over N frames (independent of the view)."""

    def __init__(self, joints: np.ndarray, subject: body_lib.Subject):
        j = np.asarray(joints, np.float64)
        n = len(j)
        look, shape = subject.look, subject.body
        g = shape.girth
        self.n = n
        self.look = look
        self.girth = g
        self.skin, self.hair = _bgr(look.skin), _bgr(look.hair)
        self.shirt, self.pattern = _bgr(look.shirt), _bgr(look.pattern_colour)
        self.strap_col, self.stripe_col = _bgr(look.strap_colour), _bgr(look.stripe_colour)
        up = _unit(j[:, 8] - j[:, 0])
        left_hip = _unit(j[:, 4] - j[:, 1])
        left_sh = _unit(j[:, 11] - j[:, 14])
        fwd = _unit(np.cross(left_hip + left_sh, up))

        # ---- capsules: endpoints [N, K, 3], radii [N, K], BGR colour [K, 3]
        a, b, ra, rb, col, names = [], [], [], [], [], []

        def add(name, pa, pb, r0, r1, colour):
            a.append(pa)
            b.append(pb)
            ra.append(np.broadcast_to(r0, (n,)).astype(np.float64))
            rb.append(np.broadcast_to(r1, (n,)).astype(np.float64))
            col.append(colour)
            names.append(name)

        trousers = _bgr(look.trousers)
        for name, ja, jb, r0, r1 in _LIMBS:
            bend = 0.0
            if name in _BULGE_CHILD:
                # Non-rigid: flexing the elbow/knee bulges the upper limb a little.
                u1 = _unit(j[:, jb] - j[:, ja])
                u2 = _unit(j[:, _BULGE_CHILD[name]] - j[:, jb])
                bend = 0.5 * (1 - np.sum(u1 * u2, -1))
            if "arm" in name:
                c = self.shirt if (name.endswith("upper_arm") or look.long_sleeves) else self.skin
            else:
                c = trousers if (name.endswith("thigh") or look.long_trousers) else self.skin
            add(name, j[:, ja], j[:, jb], r0 * g * (1 + 0.2 * bend), r1 * g * (1 + 0.1 * bend), c)
        head_c0 = 0.5 * (j[:, 9] + j[:, 10])
        add("neck", j[:, 8], head_c0, 40 * g, 38 * g, self.skin)
        # Shoes: from behind the ankle forward, towards the floor.
        foot_fwd = fwd.copy()
        foot_fwd[:, 2] = 0
        foot_fwd = _unit(foot_fwd)
        for side, ja in (("r", 3), ("l", 6)):
            add(f"{side}_shoe", j[:, ja] - 25 * foot_fwd, j[:, ja] + 150 * foot_fwd - [0, 0, 45.0],
                46.0, 38.0, _bgr(look.shoes))
        self.cap_a, self.cap_b = np.stack(a, 1), np.stack(b, 1)
        self.cap_r = 0.5 * (np.stack(ra, 1) + np.stack(rb, 1))
        self.cap_col = np.stack(col)
        self.cap_names = names
        axis = _unit(self.cap_b - self.cap_a)
        lit = _LIGHT - np.sum(_LIGHT * axis, -1, keepdims=True) * axis
        # Lambert term of the side facing the light: limbs along the light direction are darker.
        self.cap_lambert = 0.72 + 0.28 * np.linalg.norm(lit, axis=-1)
        self.cap_light = _unit(lit)

        # ---- trouser stripe along the outer side of one leg
        self.stripe = []
        if look.stripe_side:
            side_sign = 1.0 if look.stripe_side == "L" else -1.0
            for name in (f"{look.stripe_side.lower()}_thigh", f"{look.stripe_side.lower()}_shin"):
                if name.endswith("shin") and not look.long_trousers:
                    continue
                k = names.index(name)
                out = side_sign * left_hip * self.cap_r[:, k:k + 1] * 0.65
                self.stripe.append((k, self.cap_a[:, k] + out, self.cap_b[:, k] + out))

        # ---- hands and watch
        self.hand_c = np.stack([j[:, 13] + 0.3 * (j[:, 13] - j[:, 12]),
                                j[:, 16] + 0.3 * (j[:, 16] - j[:, 15])], 1)
        self.hand_r = 40 * g
        wj, ej = (13, 12) if look.watch_side == "L" else (16, 15)
        self.watch_k = names.index("l_forearm" if look.watch_side == "L" else "r_forearm")
        self.watch = (j[:, wj] + 0.14 * (j[:, ej] - j[:, wj]), j[:, wj] + 0.04 * (j[:, ej] - j[:, wj]))

        # ---- head: sphere, face disc on its front, eyes, optional long hair behind
        head_up = _unit(j[:, 10] - j[:, 8])
        nose = j[:, 9] - j[:, 10]
        head_fwd = nose - np.sum(nose * head_up, -1, keepdims=True) * head_up
        head_fwd = _unit(head_fwd + 10.0 * fwd)  # joints alone give a weak cue: lean on the torso
        head_left = _unit(np.cross(head_up, head_fwd))
        r_head = 0.5 * np.linalg.norm(j[:, 10] - j[:, 9], axis=-1) + 45
        rh = r_head[:, None]
        self.head_r = r_head
        self.head_c = head_c0 + 0.3 * rh * head_up - 0.1 * rh * head_fwd
        self.face_c = self.head_c + 0.42 * rh * head_fwd - 0.12 * rh * head_up
        self.eyes = np.stack([self.head_c + rh * (0.9 * head_fwd + s * 0.38 * head_left
                                                   + 0.05 * head_up) for s in (1, -1)], 1)
        self.head_light = self.head_c + 0.35 * rh * _LIGHT
        self.hair_back = self.head_c - 0.45 * rh * head_fwd - 1.0 * rh * head_up

        # ---- torso: elliptical cross-sections at shoulders, chest, waist and hips; any
        # view's silhouette is the convex hull of their projections (wide from the front,
        # deep from the side).
        sh_l, sh_r, hip_l, hip_r = j[:, 11], j[:, 14], j[:, 4], j[:, 1]
        fwd_sh = _unit(np.cross(left_sh, up))
        fwd_hip = _unit(np.cross(left_hip, up))
        half_sh = 0.5 * np.linalg.norm(sh_l - sh_r, axis=-1) + 22 * g
        half_hip = 0.5 * np.linalg.norm(hip_l - hip_r, axis=-1) + 42 * g
        levels = (  # (centre, left axis, forward axis, half width, half depth)
            (0.5 * (sh_l + sh_r) + 15 * up, left_sh, fwd_sh, half_sh, 80 * g),
            (0.5 * (j[:, 8] + j[:, 7]), left_sh, fwd_sh, 0.85 * half_sh, 105 * g),
            (j[:, 7] - 20 * up, _unit(left_sh + left_hip), _unit(fwd_sh + fwd_hip),
             0.78 * half_sh * shape.belly, 100 * g * shape.belly),
            (0.5 * (hip_l + hip_r) - 25 * up, left_hip, fwd_hip, half_hip, 95 * g),
        )
        ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        ca, sa = np.cos(ang)[None, :, None], np.sin(ang)[None, :, None]
        rings, centres = [], []
        for c, lft, fw, hw, hd in levels:
            rings.append(c[:, None] + ca * hw[..., None, None] * lft[:, None]
                         + sa * np.broadcast_to(hd, (n,))[:, None, None] * fw[:, None])
            centres.append(c)
        self.rings = np.stack(rings, 1)           # [N, 4, 12, 3]
        self.ring_c = np.stack(centres, 1)        # [N, 4, 3]
        self.torso_c = self.ring_c.mean(1)
        self.torso_fwd = _unit(fwd_sh + fwd_hip)
        light = 0.25 * 100 * g * _LIGHT
        self.torso_inner = (self.ring_c[:, :, None] + 0.78 * (self.rings - self.ring_c[:, :, None]))
        self.torso_hl = (self.ring_c[:, :, None] + 0.4 * (self.rings - self.ring_c[:, :, None])
                         + light)
        # Shirt pattern bands: pairs of rings at heights along the torso (they wrap around).
        fr = {"plain": (), "stripes": (0.3, 0.5, 0.7), "chest_band": (0.28,)}[look.shirt_pattern]
        half = 0.06 if look.shirt_pattern == "chest_band" else 0.03
        self.bands = [np.concatenate([self._ring_at(s - half), self._ring_at(s + half)], 1)
                      for s in fr]
        # Bag strap from one shoulder to the other hip, on the front and on the back.
        self.has_strap = bool(look.strap_side)
        top = 1 if look.strap_side == "L" else -1
        strap = []
        for face in (1, -1):
            p0 = self.ring_c[:, 0] + top * 0.55 * half_sh[:, None] * left_sh + face * 70 * g * fwd_sh
            p1 = self.ring_c[:, 3] - top * 0.8 * half_hip[:, None] * left_hip + face * 90 * g * fwd_hip
            strap.append((p0, p1))
        self.strap = strap
        self.bag_c = self.ring_c[:, 3] - top * (half_hip[:, None] + 40) * left_hip - 10 * up

    def _ring_at(self, s: float) -> np.ndarray:
        """Torso cross-section [N, 12, 3] at fraction s from the shoulders (0) to hips (1)."""
        x = np.clip(s, 0, 1) * 3
        i = min(int(x), 2)
        w = x - i
        return (1 - w) * self.rings[:, i] + w * self.rings[:, i + 1]


def _fixed(xy: np.ndarray) -> list:
    """Pixel coords -> nested lists of OpenCV fixed-point ints (one conversion per view)."""
    return np.round(np.clip(xy, -1e5, 1e5) * _ONE).astype(np.int64).tolist()


def _colour(col: np.ndarray, factor) -> list:
    return np.clip(col * np.asarray(factor)[..., None], 0, 255).astype(np.int64).tolist()


def _view_geometry(b: _Body3D, cam: cameras_lib.Camera, ox, oy, scale) -> dict:
    """Projects all primitives of all frames into one view (vectorised)."""
    f = 0.5 * (cam.fx + cam.fy)
    s1 = scale[:, None]

    def proj(p):
        squeeze = p.ndim == 2
        p = p[:, None] if squeeze else p
        pc = p @ cam.rotation.T + cam.translation
        uv = cam.project_camera(pc)
        out = np.stack([(uv[..., 0] - ox[:, None]) * s1, (uv[..., 1] - oy[:, None]) * s1], -1)
        z = pc[..., 2]
        return (out[:, 0], z[:, 0]) if squeeze else (out, z)

    g = {}
    ca, _ = proj(b.cap_a)
    cb, _ = proj(b.cap_b)
    mid = 0.5 * (b.cap_a + b.cap_b)
    cm, zm = proj(mid)
    hl, _ = proj(mid + b.cap_light * (0.4 * b.cap_r)[..., None])
    ppm = f * s1 / np.maximum(zm, 1.0)  # output pixels per mm
    ref = np.median(zm, axis=1, keepdims=True)
    # Darker with depth: a strong cue for which limb is in front.
    depth_f = np.clip(1.0 - 0.3 * (zm - ref) / 300.0, 0.65, 1.2)
    base = b.cap_lambert * depth_f
    g["cap_z"] = zm.tolist()
    g["cap_a"], g["cap_b"] = _fixed(ca), _fixed(cb)
    hoff = (hl - cm) * 0.9
    g["cap_ha"], g["cap_hb"] = _fixed(ca + hoff), _fixed(cb + hoff)
    w = 2 * b.cap_r * ppm
    g["cap_w"] = np.maximum(np.round(w), 1).astype(int).tolist()
    g["cap_w2"] = np.maximum(np.round(w * 0.68), 1).astype(int).tolist()
    g["cap_w3"] = np.maximum(np.round(w * 0.25), 1).astype(int).tolist()
    g["cap_c1"] = _colour(b.cap_col[None], base * 0.62)
    g["cap_c2"] = _colour(b.cap_col[None], base)
    g["cap_c3"] = _colour(b.cap_col[None], np.minimum(base * 1.25, 1.45))
    body_f = depth_f.mean(1)

    hc, hz = proj(b.head_c)
    fc, fz = proj(b.face_c)
    hlc, _ = proj(b.head_light)
    eyes, ez = proj(b.eyes)
    hb, _ = proj(b.hair_back)
    r_head = b.head_r * f * scale / np.maximum(hz, 1.0)
    g["head_z"], g["face_front"] = hz.tolist(), (fz < hz).tolist()
    g["head_c"], g["face_c"], g["head_l"] = _fixed(hc), _fixed(fc), _fixed(hlc)
    g["hair_back"] = _fixed(hb)
    g["head_r"] = np.round(r_head * _ONE).astype(int).tolist()
    g["face_r"] = np.round(r_head * 0.8 * _ONE).astype(int).tolist()
    g["hl_r"] = np.round(r_head * 0.45 * _ONE).astype(int).tolist()
    g["hair_w"] = np.maximum(np.round(r_head * 1.3), 1).astype(int).tolist()
    g["eyes"] = _fixed(eyes)
    g["eye_vis"] = (ez < hz[:, None] - 0.3 * b.head_r[:, None]).tolist()
    g["eye_r"] = np.maximum(np.round(r_head * 0.1 * _ONE), _ONE // 2).astype(int).tolist()
    g["hair_c"] = _colour(b.hair[None], body_f)
    g["hair_hl"] = _colour(b.hair[None], body_f * 1.3)
    g["skin_c"] = _colour(b.skin[None], body_f)
    g["skin_hl"] = _colour(b.skin[None], np.minimum(body_f * 1.12, 1.25))

    hand, hz2 = proj(b.hand_c)
    g["hand_z"], g["hand"] = hz2.tolist(), _fixed(hand)
    g["hand_r"] = np.round(b.hand_r * f * s1 / np.maximum(hz2, 1) * _ONE).astype(int).tolist()
    wa, wz = proj(b.watch[0])
    wb, _ = proj(b.watch[1])
    g["watch_a"], g["watch_b"] = _fixed(wa), _fixed(wb)
    g["watch_w"] = np.maximum(np.round(2 * 36 * b.girth * f * scale / np.maximum(wz, 1)),
                              1).astype(int).tolist()

    n = b.n
    nring = b.rings.shape[1] * b.rings.shape[2]
    outer, _ = proj(b.rings.reshape(n, nring, 3))
    inner, _ = proj(b.torso_inner.reshape(n, nring, 3))
    hlp, _ = proj(b.torso_hl.reshape(n, nring, 3))
    _, tz = proj(b.torso_c)
    tp = f * scale / np.maximum(tz, 1.0)
    g["torso_z"] = tz.tolist()
    g["torso"] = [np.round(np.clip(x, -1e5, 1e5) * _ONE).astype(np.int32) for x in (outer, inner, hlp)]
    g["bands"] = [np.round(np.clip(proj(r)[0], -1e5, 1e5) * _ONE).astype(np.int32) for r in b.bands]
    g["torso_c"] = [_colour(b.shirt[None], body_f * k) for k in (0.62, 0.95, 1.15)]
    g["band_c"] = [_colour(b.pattern[None], body_f * k) for k in (0.62, 0.95, 1.15)]
    # Which strap (front or back) faces the camera.
    to_cam = cam.centre - b.torso_c
    front = np.sum(to_cam * b.torso_fwd, -1) > 0
    sa = np.where(front[:, None], b.strap[0][0], b.strap[1][0])
    sb = np.where(front[:, None], b.strap[0][1], b.strap[1][1])
    g["strap_a"], g["strap_b"] = _fixed(proj(sa)[0]), _fixed(proj(sb)[0])
    g["strap_w"] = np.maximum(np.round(22 * tp), 1).astype(int).tolist()
    g["strap_c"] = _colour(b.strap_col[None], body_f)
    bag, bz = proj(b.bag_c)
    g["bag_z"], g["bag"] = bz.tolist(), _fixed(bag)
    g["bag_r"] = np.round(70 * f * scale / np.maximum(bz, 1) * _ONE).astype(int).tolist()
    g["bag_c"] = _colour(b.strap_col[None], body_f * 0.9)
    stripes = []
    for k, pa, pb in b.stripe:
        sa_, _ = proj(pa)
        sb_, _ = proj(pb)
        _, sz = proj(0.5 * (pa + pb))
        # Visible only when the outer side of the leg faces the camera (nearer than the axis).
        stripes.append((k, _fixed(sa_), _fixed(sb_), (sz < zm[:, k]).tolist()))
    g["stripes"] = stripes
    g["stripe_w"] = np.maximum(np.round(18 * tp), 1).astype(int).tolist()
    g["stripe_c"] = _colour(b.stripe_col[None], body_f)
    return g


def _draw_frame(img: np.ndarray, b: _Body3D, g: dict, t: int) -> None:
    """Draws frame ``t`` of one view into ``img`` (BGR), far parts first."""
    items = [(z, _CAPSULE, k) for k, z in enumerate(g["cap_z"][t])]
    items.append((g["head_z"][t], _HEAD, 0))
    items.append((g["hand_z"][t][0], _HAND, 0))
    items.append((g["hand_z"][t][1], _HAND, 1))
    items.append((g["torso_z"][t], _TORSO, 0))
    if b.has_strap:
        items.append((g["bag_z"][t], _BAG, 0))
    items.sort(key=lambda it: -it[0])
    line, circle = cv2.line, cv2.circle
    for _, kind, k in items:
        if kind == _CAPSULE:
            a, bb, w = g["cap_a"][t][k], g["cap_b"][t][k], g["cap_w"][t][k]
            line(img, a, bb, g["cap_c1"][t][k], w, _LINE, _SHIFT)
            # Inner shading lines without anti-aliasing: 3x cheaper, and their edges fall on
            # similar colours where aliasing does not show.
            if w >= 3:
                line(img, a, bb, g["cap_c2"][t][k], g["cap_w2"][t][k], _INNER, _SHIFT)
            if w >= 5:
                line(img, g["cap_ha"][t][k], g["cap_hb"][t][k], g["cap_c3"][t][k],
                     g["cap_w3"][t][k], _INNER, _SHIFT)
            for sk, sa, sb, vis in g["stripes"]:
                if sk == k and vis[t]:
                    line(img, sa[t], sb[t], g["stripe_c"][t], g["stripe_w"][t], _LINE, _SHIFT)
            if k == b.watch_k:
                line(img, g["watch_a"][t], g["watch_b"][t], [30, 30, 30], g["watch_w"][t],
                     _LINE, _SHIFT)
        elif kind == _HEAD:
            _draw_head(img, b, g, t)
        elif kind == _HAND:
            circle(img, g["hand"][t][k], g["hand_r"][t][k], g["skin_c"][t], -1, _LINE, _SHIFT)
        elif kind == _TORSO:
            for layer in range(3):
                hull = cv2.convexHull(g["torso"][layer][t])
                cv2.fillConvexPoly(img, hull, g["torso_c"][layer][t], _LINE, _SHIFT)
            for band in g["bands"]:
                # The band is shaded like the torso: clip it to the torso's layers by colour.
                hull = cv2.convexHull(band[t])
                cv2.fillConvexPoly(img, hull, g["band_c"][1][t], _LINE, _SHIFT)
            if b.has_strap:
                line(img, g["strap_a"][t], g["strap_b"][t], g["strap_c"][t], g["strap_w"][t],
                     _LINE, _SHIFT)
        else:
            circle(img, g["bag"][t], g["bag_r"][t], g["bag_c"][t], -1, _LINE, _SHIFT)


def _draw_head(img, b: _Body3D, g: dict, t: int) -> None:
    hc, fc, r = g["head_c"][t], g["face_c"][t], g["head_r"][t]
    hair, skin = g["hair_c"][t], g["skin_c"][t]
    front = g["face_front"][t]
    if b.look.hair_long and front:  # hair falls behind the head: draw it first
        cv2.line(img, hc, g["hair_back"][t], hair, g["hair_w"][t], _LINE, _SHIFT)
    if front:
        cv2.circle(img, hc, r, hair, -1, _LINE, _SHIFT)
        cv2.circle(img, fc, g["face_r"][t], skin, -1, _LINE, _SHIFT)
        cv2.circle(img, g["head_l"][t], g["hl_r"][t], g["skin_hl"][t], -1, _LINE, _SHIFT)
        for e in range(2):
            if g["eye_vis"][t][e]:
                cv2.circle(img, g["eyes"][t][e], g["eye_r"][t], _EYE_BGR, -1, _LINE, _SHIFT)
    else:
        cv2.circle(img, fc, g["face_r"][t], skin, -1, _LINE, _SHIFT)
        cv2.circle(img, hc, r, hair, -1, _LINE, _SHIFT)
        cv2.circle(img, g["head_l"][t], g["hl_r"][t], g["hair_hl"][t], -1, _LINE, _SHIFT)
        if b.look.hair_long:
            cv2.line(img, hc, g["hair_back"][t], hair, g["hair_w"][t], _LINE, _SHIFT)


def _object_geometry(objects: Sequence, cam: cameras_lib.Camera, ox, oy, scale) -> list:
    """Per moving object: depth [T], and per frame a filled polygon (box) or circle (ball)."""
    f = 0.5 * (cam.fx + cam.fy)
    out = []
    for ob in objects:
        pc = cam.world_to_camera(ob.centre)
        z = pc[:, 2]
        colour = _colour(_bgr(ob.colour)[None], np.clip(1.0 - 0.3 * (z - 5000) / 3000, 0.6, 1.1))
        if ob.kind == "ball":
            uv = cam.project_camera(pc)
            xy = np.stack([(uv[:, 0] - ox) * scale, (uv[:, 1] - oy) * scale], -1)
            r = 0.5 * ob.size * f * scale / np.maximum(z, 1.0)
            shape = (_fixed(xy), np.round(r * _ONE).astype(int).tolist())
        else:
            h = 0.5 * ob.size
            corners = np.array([[sx, sy, sz] for sx in (-h, h) for sy in (-h, h)
                                for sz in (-h, h)])
            c, s = np.cos(ob.yaw)[:, None], np.sin(ob.yaw)[:, None]
            world = ob.centre[:, None] + np.stack(
                [c * corners[:, 0] - s * corners[:, 1], s * corners[:, 0] + c * corners[:, 1],
                 np.broadcast_to(corners[:, 2], c.shape[:1] + (8,))], -1)
            uv = cam.project(world)
            xy = np.stack([(uv[..., 0] - ox[:, None]) * scale[:, None],
                           (uv[..., 1] - oy[:, None]) * scale[:, None]], -1)
            shape = (np.round(np.clip(xy, -1e5, 1e5) * _ONE).astype(np.int32), None)
        out.append((ob.kind, z.tolist(), shape, colour, (z > 100).tolist()))
    return out


def _draw_object(img: np.ndarray, geometry: tuple, t: int) -> None:
    kind, _, (pts, radius), colour, _ = geometry
    if kind == "ball":
        cv2.circle(img, pts[t], radius[t], colour[t], -1, _LINE, _SHIFT)
    else:
        cv2.fillConvexPoly(img, cv2.convexHull(pts[t]), colour[t], _LINE, _SHIFT)


def _draw_scene(img: np.ndarray, people: list, objects: list, t: int) -> None:
    """Draws several people ((body, geometry), ...) and objects far to near.

    People are ordered as wholes by torso depth: two people rarely interpenetrate, and
    sorting their parts together would let a far person's arm cover a near one's chest.
    """
    items = [(g["torso_z"][t], 0, i) for i, (_, g) in enumerate(people)]
    items += [(o[1][t], 1, i) for i, o in enumerate(objects) if o[4][t]]
    for _, kind, i in sorted(items, key=lambda it: -it[0]):
        if kind == 0:
            _draw_frame(img, people[i][0], people[i][1], t)
        else:
            _draw_object(img, objects[i], t)


def _iter_views(joints: np.ndarray, cams, subject, placement, backgrounds, clutter):
    """Shared loop of :func:`iter_render` and :func:`iter_frames`.

    ``placement(v)`` gives view ``v``'s per-frame image-to-output mapping (ox [N], oy [N],
    scale [N]), the output (width, height) and a function filling the buffer of frame t
    with the background.
    """
    n = len(joints)
    b = _Body3D(joints, subject)
    others = [] if clutter is None else [_Body3D(j, s) for s, j in clutter.people]
    for v, cam in enumerate(cams):
        ox, oy, scale, (w, h), fill = placement(v)
        buf = np.zeros((h, w, 3), np.uint8)
        g = _view_geometry(b, cam, ox, oy, scale)
        if clutter is not None:
            people = [(b, g)] + [(o, _view_geometry(o, cam, ox, oy, scale)) for o in others]
            objects = _object_geometry(clutter.objects, cam, ox, oy, scale)
        for t in range(n):
            fill(buf, t)
            if clutter is None:
                _draw_frame(buf, b, g, t)
            else:
                _draw_scene(buf, people, objects, t)
                clutter_lib.apply_camera(buf, clutter, t, v)
            yield t, v, buf


def iter_render(joints: np.ndarray, cams: Sequence[cameras_lib.Camera], subject: body_lib.Subject,
                boxes: np.ndarray, size: int, backgrounds: Optional[Sequence] = None,
                clutter: Optional[clutter_lib.TakeClutter] = None):
    """Yields (t, v, image) for N frames in V views, view-major; the fast path.

    ``image`` is a BGR uint8 [size, size, 3] buffer that is **reused** for the next
    image: encode or copy it before advancing the iterator. Arguments as
    :func:`render_batch`; ``clutter`` adds bystanders, moving objects, lighting and
    noise (:mod:`~tfrecords_tools.synth.clutter`).
    """
    boxes = np.asarray(boxes, np.float64)

    def placement(v):
        bx = boxes[:, v]
        scale = size / (bx[:, 2] - bx[:, 0])
        bg = None if backgrounds is None else backgrounds[v]

        def fill(buf, t):
            if bg is None:
                buf.fill(0)  # reusing one buffer: a fresh np.zeros per image costs page faults
            else:
                m = np.array([[scale[t], 0, -scale[t] * bx[t, 0]],
                              [0, scale[t], -scale[t] * bx[t, 1]]])
                cv2.warpAffine(bg, m, (size, size), dst=buf, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        return bx[:, 0], bx[:, 1], scale, (size, size), fill

    yield from _iter_views(joints, cams, subject, placement, backgrounds,
                           None if clutter is None or clutter.empty else clutter)


def iter_frames(joints: np.ndarray, cams: Sequence[cameras_lib.Camera],
                subject: body_lib.Subject, backgrounds: Optional[Sequence] = None,
                clutter: Optional[clutter_lib.TakeClutter] = None):
    """Yields (t, v, image) full camera images (BGR, [H, W, 3] of each camera), view-major.

    For full-frame studies (person finding); pass cameras scaled to the wanted size
    (:func:`tfrecords_tools.h36m_calibration.scale_camera`). ``backgrounds``: per view a
    BGR image of the camera's size, or None for black. The buffer is reused as in
    :func:`iter_render`.
    """
    n = len(joints)

    def placement(v):
        cam = cams[v]
        bg = None if backgrounds is None else backgrounds[v]

        def fill(buf, t):
            if bg is None:
                buf.fill(0)
            else:
                np.copyto(buf, bg)
        return np.zeros(n), np.zeros(n), np.ones(n), (cam.width, cam.height), fill

    yield from _iter_views(joints, cams, subject, placement, backgrounds,
                           None if clutter is None or clutter.empty else clutter)


def render_batch(joints: np.ndarray, cams: Sequence[cameras_lib.Camera], subject: body_lib.Subject,
                 boxes: np.ndarray, size: int, backgrounds: Optional[Sequence] = None) -> list:
    """Renders N frames of one person in V views as square BGR crops.

    Args:
      joints: [N, 17, 3] world joints in mm.
      cams: the V cameras.
      subject: the person's body and look.
      boxes: [N, V, 4] square crop boxes (x0, y0, x1, y1) in original-image pixels.
      size: crop side in pixels.
      backgrounds: per view a full-resolution BGR image (cropped along the box), or None
        for the black background-removed look.

    Returns:
      [N][V] uint8 BGR arrays of shape [size, size, 3].
    """
    out = [[None] * len(cams) for _ in range(len(joints))]
    for t, v, img in iter_render(joints, cams, subject, boxes, size, backgrounds):
        out[t][v] = img.copy()
    return out


def silhouette(over_white: np.ndarray, over_black: np.ndarray) -> np.ndarray:
    """Bool mask [H, W] of the pixels a render covers at least half, from the same frame
    rendered over a white and over a black background: coverage is one minus their
    difference (in the channel that differs most) over 255."""
    return np.abs(over_white.astype(np.int16) - over_black).max(-1) <= 127


def person_mask(joints_world: np.ndarray, camera: cameras_lib.Camera,
                subject: body_lib.Subject) -> np.ndarray:
    """:func:`silhouette` of one person in one full camera image (the exact truth of
    background-subtraction tests)."""
    white = np.full((camera.height, camera.width, 3), 255, np.uint8)
    return silhouette(render_view(joints_world, camera, subject, background=white),
                      render_view(joints_world, camera, subject))


def render_view(joints_world: np.ndarray, camera: cameras_lib.Camera, subject: body_lib.Subject,
                box=None, out_size: Optional[int] = None,
                background: Optional[np.ndarray] = None) -> np.ndarray:
    """Renders one frame seen by one camera; returns an RGB uint8 image.

    Args:
      joints_world: [17, 3] world joints in mm.
      camera: the camera.
      subject: from :func:`tfrecords_tools.synth.body.make_subject`.
      box: square crop box (x0, y0, x1, y1) in original-image pixels, or None for the full
        camera image.
      out_size: crop side (box given; default 160), or the output width of the full image
        (height scaled alike; default the camera's own size).
      background: RGB image of the camera's full size (e.g. from
        :func:`tfrecords_tools.synth.scene.render_background`), or None for black.

    Returns:
      [S, S, 3] for a crop, else [H', W', 3] with W' = out_size (or the camera width).
    """
    joints = np.asarray(joints_world, np.float64).reshape(1, -1, 3)
    bg = None if background is None else np.ascontiguousarray(np.asarray(background)[..., ::-1])
    b = _Body3D(joints, subject)
    if box is not None:
        size = int(out_size or 160)
        box = np.asarray(box, np.float64)
        return render_batch(joints, [camera], subject, box.reshape(1, 1, 4), size,
                            None if bg is None else [bg])[0][0][..., ::-1].copy()
    s = 1.0 if out_size is None else out_size / camera.width
    w, h = int(round(camera.width * s)), int(round(camera.height * s))
    if bg is None:
        img = np.zeros((h, w, 3), np.uint8)
    else:
        img = cv2.resize(bg, (w, h), interpolation=cv2.INTER_AREA)
    g = _view_geometry(b, camera, np.zeros(1), np.zeros(1), np.array([s]))
    _draw_frame(img, b, g, 0)
    return img[..., ::-1].copy()
