r"""Synthetic data throughput: view images rendered + JPEG-encoded + written per second per core.

  python benchmarks/bench_synthesize.py [--image_size=160] [--background] [--num_frames=400]

Runs :func:`tfrecords_tools.synthesize.generate` in this process (one worker) into a
temporary directory and divides the images written by the process CPU time (user + system,
so the figure is per core and fair on a shared machine); wall-clock rate is printed too.
Also times the stages alone: render, render + encode. Target: >= 1,000 images/s per core
at 160 px.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

flags.DEFINE_integer("image_size", 160, "Crop side in pixels.")
flags.DEFINE_bool("background", False, "Render the room background.")
flags.DEFINE_integer("num_frames", 400, "Frames per take.")
flags.DEFINE_list("subjects", ["S1", "S9"], "Subjects.")
flags.DEFINE_list("actions", ["Walking", "Boxing"], "Actions.")
flags.DEFINE_string("json_out", None, "Optional path for the results as JSON.")
FLAGS = flags.FLAGS


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def main(argv):
    del argv
    import cv2
    import numpy as np
    import tensorflow as tf  # noqa: F401  (imported before timing: start-up is not throughput)
    from tfrecords_tools import cameras, synthesize
    from tfrecords_tools.synth import body, motion, render

    cfg = synthesize.SynthConfig(subjects=tuple(FLAGS.subjects), actions=tuple(FLAGS.actions),
                                 takes=1, num_frames=FLAGS.num_frames,
                                 image_size=FLAGS.image_size, background=FLAGS.background)
    results = {"image_size": FLAGS.image_size, "background": FLAGS.background,
               "cv2_threads": cv2.getNumThreads()}

    # Stage timings on one take (4 views), warm.
    rig = cameras.h36m_rig()
    subj = body.make_subject("S1")
    joints = motion.generate_motion(subj, "Walking", 256, np.random.default_rng(0))
    boxes = synthesize.crop_boxes(joints, rig, cfg.crop_margin, cfg.crop_jitter,
                                  np.random.default_rng(0))
    bgs = synthesize._backgrounds(cfg, rig)
    n = len(joints) * len(rig)
    for _ in render.iter_render(joints[:8], rig, subj, boxes[:8], cfg.image_size, bgs):
        pass
    c0 = _cpu()
    for _ in render.iter_render(joints, rig, subj, boxes, cfg.image_size, bgs):
        pass
    c1 = _cpu()
    for _, _, img in render.iter_render(joints, rig, subj, boxes, cfg.image_size, bgs):
        synthesize.encode_jpeg(img, cfg.jpeg_quality)
    c2 = _cpu()
    results["render_per_cpu_s"] = n / (c1 - c0)
    results["render_encode_per_cpu_s"] = n / (c2 - c1)

    # End to end: motion + filter + crops + render + encode + serialise + write + checksums.
    out = tempfile.mkdtemp(prefix="bench_synth_")
    try:
        w0, c0 = time.perf_counter(), _cpu()
        manifest = synthesize.generate(out, cfg, num_workers=1, log=lambda s: None)
        w1, c1 = time.perf_counter(), _cpu()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    images = manifest["totals"]["num_images"]
    results.update(images=images, wall_s=w1 - w0, cpu_s=c1 - c0,
                   images_per_cpu_s=images / (c1 - c0), images_per_wall_s=images / (w1 - w0))
    print(f"image_size={FLAGS.image_size} background={FLAGS.background} "
          f"(cv2 threads {results['cv2_threads']})")
    print(f"  render only         {results['render_per_cpu_s']:8.0f} images/s per core")
    print(f"  render + encode     {results['render_encode_per_cpu_s']:8.0f} images/s per core")
    print(f"  end to end (write)  {results['images_per_cpu_s']:8.0f} images/s per core "
          f"({images} images, {results['cpu_s']:.1f} CPU s, {results['wall_s']:.1f} wall s, "
          f"{results['images_per_wall_s']:.0f} images/s wall)")
    target = 1000
    print(f"  target >= {target}/s per core: "
          f"{'met' if results['images_per_cpu_s'] >= target else 'NOT met'}")
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)
