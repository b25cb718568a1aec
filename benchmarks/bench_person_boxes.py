r"""Person boxes on cluttered generator scenes, measured against the exact truth.

  python benchmarks/bench_person_boxes.py --boxes=baseline --seeds=0,1 \
      --json_out=/tmp/boxes.json --md_out=/tmp/boxes.md

Renders short four-camera takes (Human3.6M rig scaled to ``--width`` pixels, ``--frames``
frames at 50 fps) with :mod:`tfrecords_tools.synth.clutter`, writes each view as an mp4
(the real input of ``rig``), and runs a box finder on the decoded frames:

* ``clutter``: one person in a textured room with furniture, moving objects, a lighting
  drift and sensor noise;
* ``two_people``: the same room and noise, and a second person walking around.

Each case is run with a main person who barely moves (``treadmill``: a walk with the
root's x/y removed, the hard case for a median background) and one who walks around.

The truth is exact: the main person is rendered alone over black and over white, and a
pixel is theirs when it is at least half covered; the truth box is
:func:`tfrecords_tools.crops.square_box` of that silhouette with ``rig``'s margin (0.2),
the rule of :func:`tfrecords_tools.video.person_box`. Per case it reports:

* IoU of the found box with the truth box (share of view-frames >= 0.85; target >= 95%),
  and the share of view-frames whose box went to the other person (IoU >= 0.5 with the
  bystander's exact box, and more than with the main person's);
* share of view-frames with all 17 projected joints inside the box (target >= 98%);
* with background removal, the median share of the person's silhouette pixels inside the
  crop that removal keeps (target >= 0.95);
* box side / projected height of a 1.8 m person standing under the pelvis (the truth
  box's ratio beside it);
* cross-view box error as the real-data check defines it: box centres triangulated across
  the views with the exact cameras, reprojected, the distance in units of the projected
  height of a 1.8 m person standing under the triangulated point (median, p90; the truth
  boxes' own figure beside it, since silhouette-box centres are not one 3D point).

``--boxes=baseline`` is the ``rig`` path before the person-box module (median background
twice, foreground mask, box around the big components, fill and smooth, removal with
:func:`~tfrecords_tools.video.remove_background`), frozen in this file; ``--boxes=module``
is ``tfrecords_tools.person_boxes.find_boxes`` with the exact cameras, and
``--boxes=module_plates`` the same given clean plates (frames of the empty room, with
the sensor noise, as a user films before the take). Accuracy only: nothing here is timed.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sys
import tempfile
from typing import Callable, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from tfrecords_tools import cameras as cameras_lib  # noqa: E402
from tfrecords_tools import crops, h36m_calibration, video  # noqa: E402
from tfrecords_tools.synth import body as body_lib  # noqa: E402
from tfrecords_tools.synth import clutter as clutter_lib  # noqa: E402
from tfrecords_tools.synth import motion as motion_lib  # noqa: E402
from tfrecords_tools.synth import render, scene  # noqa: E402

MARGIN = 0.2            # rig's --margin: the truth boxes follow the same rule
CROP_SIZE = 160         # rig's --image_size: removal is judged on crops of this side
PERSON_MM = 1800.0      # the reference person of the cross-view error
TARGETS = {"iou_share": 0.95, "joints_share": 0.98, "kept_median": 0.95}
IOU_MIN = 0.85
CASES = ("clutter", "two_people")
PLATE_FRAMES = 10      # frames of the empty room per camera (--boxes=module_plates)
MOTIONS = ("treadmill", "walk")


# ----------------------------------------------------------------------------- metrics

def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes [..., 4] (x0, y0, x1, y1, continuous coordinates)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def joints_inside(boxes: np.ndarray, joints_2d: np.ndarray) -> np.ndarray:
    """True where every joint [..., J, 2] lies inside its box [..., 4]."""
    b = np.asarray(boxes, np.float64)[..., None, :]
    j = np.asarray(joints_2d, np.float64)
    return np.all((j[..., 0] >= b[..., 0]) & (j[..., 0] <= b[..., 2])
                  & (j[..., 1] >= b[..., 1]) & (j[..., 1] <= b[..., 3]), -1)


def kept_share(silhouette: np.ndarray, keep: np.ndarray) -> float:
    """Share of the silhouette's pixels that ``keep`` keeps (NaN for an empty silhouette)."""
    n = int(np.count_nonzero(silhouette))
    return float(np.count_nonzero(silhouette & keep) / n) if n else float("nan")


def triangulate(points: np.ndarray, projections: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation of one point seen at pixels [V, 2] by 3x4 matrices [V, 3, 4]."""
    rows = []
    for (u, v), p in zip(points, projections):
        rows += [u * p[2] - p[0], v * p[2] - p[1]]
    _, _, vt = np.linalg.svd(np.asarray(rows))
    x = vt[-1]
    return x[:3] / x[3]


def projection_matrix(cam: cameras_lib.Camera) -> np.ndarray:
    return cam.matrix @ np.concatenate([cam.rotation, cam.translation[:, None]], 1)


def person_height_px(cam: cameras_lib.Camera, xy: np.ndarray) -> np.ndarray:
    """Projected height [...] of a 1.8 m person standing at world floor points [..., 2]."""
    xy = np.asarray(xy, np.float64)
    foot = np.concatenate([xy, np.zeros(xy.shape[:-1] + (1,))], -1)
    head = foot + [0.0, 0.0, PERSON_MM]
    return np.linalg.norm(cam.project(head) - cam.project(foot), axis=-1)


def cross_view_error(boxes: np.ndarray, cams: Sequence[cameras_lib.Camera]) -> np.ndarray:
    """[V, T] reprojection error of triangulated box centres, in 1.8 m-person heights.

    Args:
      boxes: [V, T, 4] boxes of one take.
      cams: the V (exact) cameras.
    """
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2
    ps = np.stack([projection_matrix(c) for c in cams])
    out = np.empty(boxes.shape[:2])
    for t in range(boxes.shape[1]):
        x = triangulate(centres[:, t], ps)
        for v, cam in enumerate(cams):
            out[v, t] = (np.linalg.norm(cam.project(x) - centres[v, t])
                         / max(person_height_px(cam, x[:2]), 1e-9))
    return out


# ----------------------------------------------------------------------------- scenes

@dataclasses.dataclass(frozen=True)
class Take:
    """One rendered take: decoded RGB frames and the exact truth, per view."""

    case: str
    motion: str
    seed: int
    cams: list
    videos: list          # V mp4 paths (the input as rig reads it)
    frames: list          # V arrays [T, H, W, 3] RGB, decoded from the mp4s
    silhouettes: list     # V arrays [T, H, W] bool
    truth: np.ndarray     # [V, T, 4]; NaN where the person is out of view
    joints_2d: np.ndarray  # [V, T, 17, 2]
    height_px: np.ndarray  # [V, T] projected 1.8 m person under the pelvis
    plates: list           # V arrays [N, H, W, 3] RGB of the empty room (clean plates)
    other_truth: np.ndarray  # [V, T, 4] exact box of the bystander (NaN: none / out of view)


def silhouettes(joints: np.ndarray, cams: Sequence[cameras_lib.Camera],
                subject: body_lib.Subject) -> list:
    """Exact masks of the person alone: V arrays [T, H, W] bool.

    The person is rendered over black and over white; a pixel's coverage is one minus
    their difference, and it belongs to the person when at least half covered.
    """
    sil = []
    for cam in cams:  # one view at a time: the frames over black wait for those over white
        black = [np.zeros((cam.height, cam.width, 3), np.uint8)]
        white = [np.full((cam.height, cam.width, 3), 255, np.uint8)]
        over_black = np.stack([img.copy() for _, _, img in
                               render.iter_frames(joints, [cam], subject, black)])
        mask = np.zeros(over_black.shape[:3], bool)
        for t, _, img in render.iter_frames(joints, [cam], subject, white):
            mask[t] = render.silhouette(img, over_black[t])
        sil.append(mask)
    return sil


def truth_boxes(sil: Sequence[np.ndarray]) -> np.ndarray:
    """[V, T, 4] boxes of silhouettes by the crop rule (NaN where a view shows nothing)."""
    out = np.full((len(sil), len(sil[0]), 4), np.nan)
    for v, masks in enumerate(sil):
        for t, mask in enumerate(masks):
            ys, xs = np.nonzero(mask)
            if len(xs):
                out[v, t] = crops.square_box(
                    np.array([[xs.min(), ys.min()], [xs.max(), ys.max()]], np.float64), MARGIN)
    return out


def _scaled_rig(width: int) -> list:
    out = []
    for c in cameras_lib.h36m_rig():
        s = width / c.width
        out.append(h36m_calibration.scale_camera(c, width, 2 * round(c.height * s / 2)))
    return out


def _main_joints(motion: str, subject: body_lib.Subject, frames: int,
                 rng: np.random.Generator) -> np.ndarray:
    joints = motion_lib.generate_motion(subject, "Walking", frames, rng)
    if motion == "treadmill":
        # Root x/y removed per frame: walking on the spot at a fixed place near the centre.
        joints = joints - np.concatenate([joints[:, :1, :2], np.zeros((frames, 1, 1))], -1)
        joints[:, :, :2] += rng.uniform(-400, 400, 2)
    return joints


def render_take(case: str, motion: str, seed: int, *, frames: int, width: int,
                lighting: str, noise: float, workdir: str) -> Take:
    """Renders one take into mp4s under ``workdir`` and computes its truth."""
    rng = np.random.default_rng([seed, CASES.index(case), MOTIONS.index(motion)])
    cams = _scaled_rig(width)
    subject = body_lib.make_subject(("S9", "S11")[seed % 2], seed)
    joints = _main_joints(motion, subject, frames, rng)
    clutter = clutter_lib.plan_take(
        joints, rng, bystanders=1 if case == "two_people" else 0,
        moving_objects=3 if case == "clutter" else 0,
        lighting=lighting if case == "clutter" else "constant", sensor_noise=noise, seed=seed)
    rooms = [np.ascontiguousarray(scene.render_background(c, seed, textured=True)[..., ::-1])
             for c in cams]
    videos = [os.path.join(workdir, f"{case}_{motion}_{seed}_{c.camera_id}.mp4") for c in cams]
    writers = [cv2.VideoWriter(p, cv2.VideoWriter_fourcc(*"mp4v"), motion_lib.FPS,
                               (c.width, c.height)) for p, c in zip(videos, cams)]
    for _, v, img in render.iter_frames(joints, cams, subject, rooms, clutter):
        writers[v].write(img)
    for w in writers:
        w.release()
    decoded = []
    for p in videos:
        with video.FrameReader(p) as r:
            decoded.append(np.stack([r.read(t) for t in range(frames)]))
    sil = silhouettes(joints, cams, subject)
    truth = truth_boxes(sil)
    other = np.full_like(truth, np.nan)
    if clutter.people:
        other = truth_boxes(silhouettes(clutter.people[0][1], cams, clutter.people[0][0]))
    j2d = np.stack([c.project(joints) for c in cams])
    height = np.stack([person_height_px(c, joints[:, 0, :2]) for c in cams])
    plates = [np.stack([_plate_frame(room, noise, seed, k, v) for k in range(PLATE_FRAMES)])
              for v, room in enumerate(rooms)]
    return Take(case, motion, seed, cams, videos, decoded, sil, truth, j2d, height, plates,
                other)


def _plate_frame(room_bgr: np.ndarray, noise: float, seed: int, k: int, v: int) -> np.ndarray:
    """One frame of the empty room filmed before the take: sensor noise and JPEG, RGB."""
    img = room_bgr.copy()
    clutter_lib.apply_camera(img, clutter_lib.TakeClutter(noise=noise, noise_seed=seed + 99),
                             k, v)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------- box finders

@dataclasses.dataclass
class Found:
    """A finder's answer for one take: boxes [V, T, 4], found [V, T], keep masks."""

    boxes: np.ndarray
    found: np.ndarray
    keep: Callable[[int, int, np.ndarray], np.ndarray]  # (v, t, box) -> [S, S] bool crop mask
    notes: str = ""
    source: Optional[np.ndarray] = None  # [V, T] person_boxes.SOURCES index (module only)


# The rig path as it was before tfrecords_tools.person_boxes (main at 655ed30:
# rig._analyse_view, video.person_box, video.fill_and_smooth_boxes), frozen here so the
# "before" figures stay reproducible after the module replaces it. Settings: RigConfig's
# defaults then (mask_threshold 30, background_samples 40, analysis_size 320,
# box_smoothing 5, margin 0.2).
_OLD = {"threshold": 30.0, "samples": 40, "analysis_size": 320, "smoothing": 5}


def _old_person_box(mask: np.ndarray, margin: float, min_area: int = 20,
                    min_side: float = 16.0) -> Optional[np.ndarray]:
    """Square box around the foreground, small components (< 1/10 of the largest) ignored."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero((areas >= min_area) & (areas >= areas.max() / 10)) + 1
    if len(keep) == 0:
        return None
    x0 = stats[keep, cv2.CC_STAT_LEFT].min()
    y0 = stats[keep, cv2.CC_STAT_TOP].min()
    x1 = (stats[keep, cv2.CC_STAT_LEFT] + stats[keep, cv2.CC_STAT_WIDTH]).max() - 1
    y1 = (stats[keep, cv2.CC_STAT_TOP] + stats[keep, cv2.CC_STAT_HEIGHT]).max() - 1
    return crops.square_box(np.array([[x0, y0], [x1, y1]], np.float64), margin, min_side)


def _old_fill_and_smooth(boxes: Sequence[Optional[np.ndarray]], window: int) -> np.ndarray:
    """Gaps take the nearest found box; centre and side get a moving average."""
    found = np.asarray([i for i, b in enumerate(boxes) if b is not None])
    out = np.stack([boxes[found[np.abs(found - i).argmin()]] for i in range(len(boxes))])
    if window > 1 and len(out) > 1:
        centre, side = (out[:, :2] + out[:, 2:]) / 2, out[:, 2] - out[:, 0]
        pad, kernel = window // 2, np.ones(window) / window
        smooth = lambda x: np.convolve(np.pad(x, pad, mode="edge"), kernel, mode="valid")
        centre = np.stack([smooth(centre[:, 0]), smooth(centre[:, 1])], -1)
        side = smooth(side)
        out = np.concatenate([centre - side[:, None] / 2, centre + side[:, None] / 2], -1)
    return out


def _old_analyse_view(frames: np.ndarray) -> tuple:
    """Raw boxes (None where nothing was found) and the median background of one view."""
    t_count, height, width = frames.shape[:3]
    scale = min(1.0, _OLD["analysis_size"] / max(width, height))
    size = (round(width * scale), round(height * scale))
    small = lambda im: im if scale == 1.0 else cv2.resize(im, size,
                                                          interpolation=cv2.INTER_AREA)
    to_full = lambda b: (np.asarray(b) + 0.5) / scale - 0.5
    samples = frames[video.sample_indices(t_count, _OLD["samples"])]
    background = video.masked_median(samples)
    # Second estimate ignoring where the first one found the person.
    small_bg0 = small(background)
    found = [_old_person_box(video.foreground_mask(small(s), small_bg0, _OLD["threshold"]), 0.1)
             for s in samples]
    background = video.masked_median(samples, np.array(
        [np.full(4, np.nan) if b is None else to_full(b) for b in found]))
    small_bg = small(background)
    boxes = []
    for frame in frames:
        box = _old_person_box(video.foreground_mask(small(frame), small_bg, _OLD["threshold"]),
                              MARGIN)
        boxes.append(None if box is None else to_full(box))
    return boxes, background


def baseline_boxes(take: Take) -> Found:
    """The rig path before the person-box module, on the decoded frames: median
    background refined by ignoring the first pass's boxes, foreground mask, box around
    the big components, fill and smooth; removal by ``video.remove_background``."""
    t_count = len(take.frames[0])
    boxes, found, backgrounds = [], [], []
    for frames in take.frames:
        raw, bg = _old_analyse_view(frames)
        found.append([b is not None for b in raw])
        boxes.append(_old_fill_and_smooth(raw, _OLD["smoothing"])
                     if any(found[-1]) else np.full((t_count, 4), np.nan))
        backgrounds.append(bg)

    def keep(v: int, t: int, box: np.ndarray) -> np.ndarray:
        crop = crops.crop_image(take.frames[v][t], box, CROP_SIZE)
        bgc = crops.crop_image(backgrounds[v], box, CROP_SIZE)
        # Removed pixels are those set to the fill value whatever it is.
        a = video.remove_background(crop, bgc, _OLD["threshold"], fill=0)
        b = video.remove_background(crop, bgc, _OLD["threshold"], fill=255)
        return ~(np.all(a == 0, -1) & np.all(b == 255, -1))

    return Found(np.stack(boxes), np.asarray(found), keep)


def module_boxes(take: Take, plates: bool = False, **settings) -> Found:
    """``tfrecords_tools.person_boxes.find_boxes`` on the decoded frames, exact cameras,
    with clean plates of the empty room when ``plates``; ``settings`` replace BoxConfig
    defaults."""
    from tfrecords_tools import person_boxes
    res = person_boxes.find_boxes(take.frames, person_boxes.BoxConfig(**settings),
                                  cameras=take.cams, plates=take.plates if plates else None)

    def keep(v: int, t: int, box: np.ndarray) -> np.ndarray:
        return np.asarray(res.keep_crop(v, t, box, CROP_SIZE), bool)

    return Found(np.asarray(res.boxes, np.float64), np.asarray(res.found, bool), keep,
                 notes="; ".join(map(str, getattr(res, "notes", ()) or ())),
                 source=np.asarray(res.source))


def diagnose(take: Take, found: Found, scores: dict,
             unsmoothed: Optional[np.ndarray] = None) -> dict:
    """Why each view-frame under the IoU bar missed: {"<origin>: <cause>": count}.

    Origin: "detected" (the view's own detection) or "not found (<source>)" (held,
    projected, filled). Cause, first that applies: *wrong person* (the box went to the
    bystander, as scored); *smoothing* (the same finder without the moving average,
    ``unsmoothed`` [V, T, 4], clears the bar); else whichever of size and centre costs
    more IoU: the box with the truth's centre (*too big* / *too small*) against the box
    with the truth's side (*offset sideways* / *offset up/down*).
    """
    from tfrecords_tools import person_boxes
    out: dict = {}
    for v, t in zip(*np.nonzero(np.nan_to_num(scores["iou"], nan=1.0) < IOU_MIN)):
        box, truth = found.boxes[v, t], take.truth[v, t]
        side, tside = box[2] - box[0], truth[2] - truth[0]
        centre, tcentre = (box[:2] + box[2:]) / 2, (truth[:2] + truth[2:]) / 2
        if scores["other"][v, t] == 1:
            cause = "wrong person"
        elif unsmoothed is not None and box_iou(unsmoothed[v, t], truth) >= IOU_MIN:
            cause = "smoothing"
        elif (box_iou(np.r_[tcentre - side / 2, tcentre + side / 2], truth)
              <= box_iou(np.r_[centre - tside / 2, centre + tside / 2], truth)):
            cause = "too big" if side > tside else "too small"
        else:
            d = centre - tcentre
            cause = "offset sideways" if abs(d[0]) >= abs(d[1]) else "offset up/down"
        src = "detected" if found.source is None else person_boxes.SOURCES[found.source[v, t]]
        key = f"{src if src == 'detected' else f'not found ({src})'}: {cause}"
        out[key] = out.get(key, 0) + 1
    return out


FINDERS = {"baseline": baseline_boxes, "module": module_boxes,
           "module_plates": lambda take: module_boxes(take, plates=True)}


# ----------------------------------------------------------------------------- scoring

def score_take(take: Take, found: Found) -> dict:
    """Per view-frame arrays of every metric (NaN where the truth is undefined)."""
    boxes, truth = found.boxes, take.truth
    valid = np.all(np.isfinite(truth), -1)
    iou = np.where(valid, box_iou(boxes, np.nan_to_num(truth)), np.nan)
    inside = joints_inside(boxes, take.joints_2d).astype(float)
    side = (boxes[..., 2] - boxes[..., 0]) / take.height_px
    truth_side = (truth[..., 2] - truth[..., 0]) / take.height_px
    kept = np.full(valid.shape, np.nan)
    for v in range(boxes.shape[0]):
        for t in range(boxes.shape[1]):
            if valid[v, t] and np.all(np.isfinite(boxes[v, t])):
                sil = crops.crop_image(take.silhouettes[v][t].astype(np.uint8), boxes[v, t],
                                       CROP_SIZE) > 0
                kept[v, t] = kept_share(sil, found.keep(v, t, boxes[v, t]))
    usable = np.all(np.isfinite(boxes), (0, 2))
    cross = np.full(valid.shape, np.nan)
    cross_truth = np.full(valid.shape, np.nan)
    both = usable & np.all(valid, 0)
    if both.any():
        cross[:, both] = cross_view_error(boxes[:, both], take.cams)
        cross_truth[:, both] = cross_view_error(truth[:, both], take.cams)
    # The box went to the other person: it matches their exact box better than the main one's.
    iou_other = box_iou(boxes, np.nan_to_num(take.other_truth))
    other = np.where(valid, (iou_other >= 0.5) & (iou_other > np.nan_to_num(iou)), np.nan)
    return {"iou": iou, "other": other, "inside": np.where(valid, inside, np.nan), "kept": kept,
            "side": side,
            "truth_side": truth_side, "cross": cross, "cross_truth": cross_truth,
            "found": found.found.astype(float), "valid": valid.astype(float)}


def summarise(per: Sequence[dict]) -> dict:
    """Pools view-frames of several takes into the reported figures."""
    cat = lambda k: np.concatenate([p[k].ravel() for p in per])
    iou, inside, kept = cat("iou"), cat("inside"), cat("kept")
    side, tside, cross, ctruth = cat("side"), cat("truth_side"), cat("cross"), cat("cross_truth")
    fin = lambda x: x[np.isfinite(x)]
    q = lambda x, p: float(np.percentile(fin(x), p)) if fin(x).size else float("nan")
    return {
        "view_frames": int(np.isfinite(iou).sum()),
        "found_share": float(np.mean(cat("found"))),
        "iou_share": float(np.mean(fin(iou) >= IOU_MIN)) if fin(iou).size else float("nan"),
        "iou_median": q(iou, 50),
        "other_share": float(np.nanmean(cat("other"))) if fin(iou).size else float("nan"),
        "joints_share": float(np.mean(fin(inside))) if fin(inside).size else float("nan"),
        "kept_median": q(kept, 50), "kept_p10": q(kept, 10),
        "side_median": q(side, 50), "side_p10": q(side, 10), "side_p90": q(side, 90),
        "truth_side_median": q(tside, 50),
        "cross_median": q(cross, 50), "cross_p90": q(cross, 90),
        "cross_truth_median": q(ctruth, 50), "cross_truth_p90": q(ctruth, 90),
    }


def markdown(rows: Sequence[dict], finder: str) -> str:
    """The results as a markdown table (targets in the header)."""
    mark = lambda ok: "" if ok else " ✗"
    lines = [f"boxes = {finder}", "",
             f"| case | motion | view-frames | found | IoU >= {IOU_MIN} (≥ 95%) | median IoU | "
             "other person boxed | joints in box (≥ 98%) | removal keeps, median (≥ 0.95) / p10 | "
             "side / height (truth) | cross-view median / p90 (truth) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["summary"]
        lines.append(
            f"| {r['case']} | {r['motion']} | {s['view_frames']} | {s['found_share']:.1%} | "
            f"{s['iou_share']:.1%}{mark(s['iou_share'] >= TARGETS['iou_share'])} | "
            f"{s['iou_median']:.2f} | {s['other_share']:.1%} | "
            f"{s['joints_share']:.1%}{mark(s['joints_share'] >= TARGETS['joints_share'])} | "
            f"{s['kept_median']:.3f}{mark(s['kept_median'] >= TARGETS['kept_median'])} / "
            f"{s['kept_p10']:.2f} | "
            f"{s['side_median']:.2f} [{s['side_p10']:.2f}–{s['side_p90']:.2f}] "
            f"({s['truth_side_median']:.2f}) | "
            f"{s['cross_median']:.3f} / {s['cross_p90']:.3f} "
            f"({s['cross_truth_median']:.3f} / {s['cross_truth_p90']:.3f}) |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- binary

def cached_take(case: str, motion: str, seed: int, *, frames: int, width: int,
                lighting: str, noise: float, workdir: str,
                cache_dir: Optional[str] = None) -> Take:
    """:func:`render_take`, or its pickle under ``cache_dir`` (written there on the first
    render). The file name holds every render setting, so another setting renders anew."""
    if not cache_dir:
        return render_take(case, motion, seed, frames=frames, width=width, lighting=lighting,
                           noise=noise, workdir=workdir)
    path = os.path.join(cache_dir, f"{case}_{motion}_{seed}_f{frames}_w{width}_{lighting}"
                                   f"_n{noise:g}.pkl")
    if os.path.exists(path):
        with open(path, "rb") as fh:
            obj = pickle.load(fh)
        # A dict of the fields (written below); a Take object in caches of the dev loop.
        return Take(**obj) if isinstance(obj, dict) else obj
    take = render_take(case, motion, seed, frames=frames, width=width, lighting=lighting,
                       noise=noise, workdir=workdir)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        # Fields, not the object: its class lives in __main__ when run as a script.
        pickle.dump({f.name: getattr(take, f.name) for f in dataclasses.fields(take)}, fh,
                    protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return take


def run(finder: str, seeds: Sequence[int], cases: Sequence[str], motions: Sequence[str], *,
        frames: int, width: int, lighting: str, noise: float,
        log: Callable[[str], None] = print, settings: Optional[dict] = None,
        cache_dir: Optional[str] = None, diagnosis: Optional[dict] = None) -> list:
    """Renders every (case, motion, seed) take (or reads it from ``cache_dir``), finds
    boxes and scores them; rows per (case, motion) and per case, seeds pooled.
    ``settings``: BoxConfig fields for the module's finders. ``diagnosis``: a dict that
    receives :func:`diagnose`'s counts per take (module finders; runs each twice)."""
    per: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_person_boxes_") as workdir:
        for case in cases:
            for motion in motions:
                for seed in seeds:
                    take = cached_take(case, motion, seed, frames=frames, width=width,
                                       lighting=lighting, noise=noise, workdir=workdir,
                                       cache_dir=cache_dir)
                    found = (FINDERS[finder](take) if finder == "baseline" else
                             module_boxes(take, finder == "module_plates", **(settings or {})))
                    scores = score_take(take, found)
                    per[case, motion, seed] = scores
                    if diagnosis is not None and finder != "baseline":
                        raw = module_boxes(take, finder == "module_plates",
                                           **{**(settings or {}), "smoothing": 1})
                        diagnosis[f"{case}_{motion}_{seed}"] = diagnose(take, found, scores,
                                                                         raw.boxes)
                    s = summarise([scores])
                    log(f"{case} {motion} seed {seed}: IoU>={IOU_MIN} {s['iou_share']:.1%}, "
                        f"joints {s['joints_share']:.1%}, kept {s['kept_median']:.3f}, "
                        f"cross {s['cross_median']:.3f}/{s['cross_p90']:.3f}"
                        + (f" [{found.notes}]" if found.notes else ""))
                    for p in take.videos:
                        if os.path.exists(p):  # a cached take's videos are gone
                            os.remove(p)
    rows = []
    for case in cases:
        for motion in list(motions) + ["all"]:
            keys = [k for k in per if k[0] == case and (motion == "all" or k[1] == motion)]
            rows.append({"case": case, "motion": motion, "seeds": list(seeds),
                         "summary": summarise([per[k] for k in keys]),
                         "per_seed": {str(k[2]): summarise([per[k]]) for k in keys
                                      if motion != "all"}})
    return rows


def define_flags() -> None:
    from absl import flags
    flags.DEFINE_enum("boxes", "baseline", list(FINDERS),
                      "baseline: the rig path before the module (frozen here); module: "
                      "tfrecords_tools.person_boxes.find_boxes; module_plates: the same with "
                      f"{PLATE_FRAMES} frames of the empty room per camera (clean plates).")
    flags.DEFINE_list("seeds", ["0", "1"], "Scene seeds.")
    flags.DEFINE_list("cases", list(CASES), f"Cases among {list(CASES)}.")
    flags.DEFINE_list("motions", list(MOTIONS), f"Main person's motions among {list(MOTIONS)}.")
    flags.DEFINE_integer("frames", 100, "Frames per take (50 fps).")
    flags.DEFINE_integer("width", 500, "Frame width in pixels (the 1000 px rig scaled).")
    flags.DEFINE_enum("lighting", "drift", list(clutter_lib.LIGHTING),
                      "Lighting change of the clutter case.")
    flags.DEFINE_float("noise", 4.0, "Sensor noise (grey levels) in both cases.")
    flags.DEFINE_float("hull_voxel_mm", None, "Module finders: BoxConfig.hull_voxel_mm "
                       "(0: no visual-hull step; default: BoxConfig's).")
    flags.DEFINE_bool("light_gain", None, "Module finders: BoxConfig.light_gain (false: "
                      "no per-frame lighting gain, the module before h-boxes4; default: "
                      "BoxConfig's).")
    flags.DEFINE_float("projected_guard", None, "Module finders: BoxConfig.projected_guard "
                       "(0: no check of the boxes of views without a detection, the module "
                       "before session 19; default: BoxConfig's).")
    flags.DEFINE_string("take_cache", None, "Directory of rendered takes (pickles, one per "
                        "case, motion, seed and render setting): read when present, else "
                        "rendered and written there. Default: render every take.")
    flags.DEFINE_bool("diagnose", False, "Module finders: classify why each view-frame "
                      "under the IoU bar missed (runs each take twice: with and without "
                      "smoothing); counts per take in the JSON and the log.")
    flags.DEFINE_string("json_out", None, "Write the results as JSON here.")
    flags.DEFINE_string("md_out", None, "Write the markdown table here.")


def main(argv: Sequence[str]) -> None:
    from absl import flags
    from tfrecords_tools.runtime import cli
    cli.check_no_arguments(argv)
    f = flags.FLAGS
    for name, values, allowed in (("cases", f.cases, CASES), ("motions", f.motions, MOTIONS)):
        bad = [x for x in values if x not in allowed]
        if bad or not values:
            raise ValueError(f"--{name}: {bad or '(none)'} unknown; expected among {list(allowed)}")
    try:
        seeds = [int(s) for s in f.seeds]
    except ValueError:
        raise ValueError(f"--seeds={','.join(f.seeds)}: expected integers") from None
    if f.frames < 10 or not 128 <= f.width <= 1000:
        raise ValueError(f"--frames {f.frames} / --width {f.width}: expected >= 10 frames and "
                         f"a width in [128, 1000]")
    cv2.setNumThreads(1)
    settings = {k: v for k, v in (("hull_voxel_mm", f.hull_voxel_mm),
                                  ("light_gain", f.light_gain),
                                  ("projected_guard", f.projected_guard)) if v is not None}
    diagnosis = {} if f.diagnose else None
    rows = run(f.boxes, seeds, f.cases, f.motions, frames=f.frames, width=f.width,
               lighting=f.lighting, noise=f.noise, settings=settings, cache_dir=f.take_cache,
               diagnosis=diagnosis)
    table = markdown(rows, f.boxes)
    print(table)
    if diagnosis:
        total: dict = {}
        for counts in diagnosis.values():
            for k, n in counts.items():
                total[k] = total.get(k, 0) + n
        print("misses by cause:", json.dumps(dict(sorted(total.items(), key=lambda kv: -kv[1]))))
    settings = {**settings, "boxes": f.boxes, "seeds": seeds, "frames": f.frames, "width": f.width,
                "lighting": f.lighting, "noise": f.noise, "margin": MARGIN,
                "crop_size": CROP_SIZE, "iou_min": IOU_MIN, "targets": TARGETS}
    out = {"settings": settings, "rows": rows}
    if diagnosis is not None:
        out["diagnosis"] = diagnosis
    for path, text in ((f.json_out, json.dumps(out, indent=1)),
                       (f.md_out, table)):
        if path:
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)


if __name__ == "__main__":
    from tfrecords_tools.runtime import cli
    define_flags()
    cli.run(main)
