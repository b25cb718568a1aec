"""Background models of tfrecords_tools.person_boxes on rendered 4-view takes (exact truth).

    python benchmarks/bench_box_backgrounds.py --size=160 --frames=30 --seeds=0,1,2

Scenes (the Human3.6M cameras, intrinsics scaled to size x size views, the generator's
textured room): "waving" (one person waving on the spot: only an arm moves), "treadmill"
(walking on the spot), "walking" (walking about), "two" (two people waving 2.2 m apart).
Per background model (plate = the empty room, median, mog2), with calibration (or
without, --no_cameras):

  found      fraction of view-frames where the person was detected
  inside     fraction of the chosen person's projected joints inside the box
  side/h     box side over the projected joint height (median)
  kept       fraction of the person's pixels the keep mask keeps (--background=remove)
  scene      fraction of the other crop pixels it keeps (lower is cleaner)
  seen       people_seen (mode over seeds)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfrecords_tools import cameras, crops, h36m_calibration, person_boxes  # noqa: E402
from tfrecords_tools.synth import body, motion, render, scene  # noqa: E402

SCENES = {"waving": ("Waving", 1, False), "treadmill": ("Walking", 1, True),
          "walking": ("Walking", 1, False), "two": ("Waving", 2, False)}


def rig(size: int) -> list:
    return [h36m_calibration.scale_camera(c, size, size) for c in cameras.h36m_rig()]


def take(kind: str, size: int, frames: int, seed: int) -> dict:
    action, count, treadmill = SCENES[kind]
    cams = rig(size)
    plates = [scene.render_background(c, seed) for c in cams]
    offsets = [(0, 0)] if count == 1 else [(-1100, 200), (1100, -200)]
    people = []
    for k, (x, y) in enumerate(offsets):
        subject = body.make_subject(f"bench{seed}_{k}", seed)
        # Twice the speed: a 30-frame take shows a step cycle.
        j = motion.generate_motion(subject, action, 2 * frames,
                                   np.random.default_rng([seed, k]))[::2]
        anchor = j[:, :1] if treadmill else j[:1, :1]
        j = j - anchor * np.array([1, 1, 0]) + np.array([x, y, 0.0])
        people.append((subject, j))
    views, masks = [], []
    for cam, plate in zip(cams, plates):
        fr, ms = [], []
        for t in range(frames):
            img, m = plate, []
            for subject, j in people:
                img = render.render_view(j[t], cam, subject, background=img)
                m.append(render.person_mask(j[t], cam, subject))
            fr.append(img)
            ms.append(np.stack(m))
        views.append(np.stack(fr))
        masks.append(np.stack(ms))
    return {"cams": cams, "plates": plates, "joints": [j for _, j in people],
            "views": views, "masks": masks}


def measure(sc: dict, background: str, calibrated: bool = True) -> dict:
    config = person_boxes.BoxConfig(background=background)
    plates = sc["plates"] if background == "plate" else None
    r = person_boxes.find_boxes(sc["views"], config, cameras=sc["cams"] if calibrated else None,
                                plates=plates)
    inside, side, kept, rest = [], [], [], []
    for v, cam in enumerate(sc["cams"]):
        for t in range(len(sc["views"][v])):
            box = r.boxes[v, t]
            per = []
            for j in sc["joints"]:
                uv = cam.project(j[t])
                per.append(np.mean((uv[:, 0] >= box[0]) & (uv[:, 0] <= box[2])
                                   & (uv[:, 1] >= box[1]) & (uv[:, 1] <= box[3])))
            k = int(np.argmax(per))
            uv = cam.project(sc["joints"][k][t])
            inside.append(per[k])
            side.append((box[2] - box[0]) / np.ptp(uv[:, 1]))
            truth = crops.crop_image(sc["masks"][v][t, k].astype(np.uint8) * 255, box, 64) > 127
            keep = r.keep_crop(v, t, box, 64)
            kept.append((keep & truth).sum() / max(truth.sum(), 1))
            rest.append((keep & ~truth).sum() / max((~truth).sum(), 1))
    return {"found": r.found.mean(), "inside": np.mean(inside), "side/h": np.median(side),
            "kept": np.mean(kept), "scene": np.mean(rest), "seen": r.people_seen}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--scenes", default=",".join(SCENES))
    p.add_argument("--backgrounds", default="plate,median,mog2")
    p.add_argument("--no_cameras", action="store_true", help="no calibration: no multi-view "
                   "track choice or check")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    print(f"{'scene':10s} {'background':10s} found inside side/h  kept scene seen")
    for kind in a.scenes.split(","):
        takes = [take(kind, a.size, a.frames, s) for s in seeds]
        for bg in a.backgrounds.split(","):
            t0 = time.time()
            rows = [measure(sc, bg, not a.no_cameras) for sc in takes]
            m = {k: np.mean([r[k] for r in rows]) for k in rows[0] if k != "seen"}
            seen = np.bincount([r["seen"] for r in rows]).argmax()
            print(f"{kind:10s} {bg:10s} {m['found']:5.2f} {m['inside']:6.3f} {m['side/h']:6.2f} "
                  f"{m['kept']:5.3f} {m['scene']:5.2f} {seen:4d}   ({time.time() - t0:.1f} s)",
                  flush=True)


if __name__ == "__main__":
    main()
