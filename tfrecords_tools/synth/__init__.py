"""Synthetic multi-view humans (the embedded default dataset of tf_synchro).

Public API (stable names other modules and tests use):

* ``body.make_subject(name, seed=0) -> body.Subject`` — a person's body shape (bone
  lengths, limb thickness) and look (colours, left/right cues), fixed by name and seed.
  ``body.KNOWN_SUBJECTS`` = S1, S5, S6, S7, S8 (train), S9, S11 (test);
  ``body.extra_subjects(n)`` = U01 ... U{n} (extra synthetic people, e.g. more
  unlabelled pre-training subjects).
* ``motion.generate_motion(subject, action, num_frames, rng, fps=50.0, style_seed=0)
  -> [T, 17, 3]`` world joints in mm (Human3.6M 17-joint order); ``motion.ACTIONS``.
* ``render.render_view(joints_world [17, 3], camera, subject, box=None, out_size=None,
  background=None) -> uint8 RGB`` — a full camera image (box None; ``out_size`` = output
  width) or a square crop of side ``out_size`` (default 160) along ``box``.
* ``render.render_batch(joints [N, 17, 3], cameras, subject, boxes [N, V, 4], size,
  backgrounds=None) -> [N][V] uint8 BGR`` — the fast path the generator uses.
* ``scene.render_background(camera, seed=0, scale=1.0) -> uint8 RGB`` — static room.
* ``motion_io.load_source(path, ImportOptions()) -> Source`` and
  ``motion_io.subject_takes(source, body_shape, options) -> [[T, 17, 3], ...]`` — motion
  capture (BVH, ASF/AMC, C3D, AMASS .npz, DeepMimic) mapped to the 17 joints, in the
  generator's world, retargeted to a subject (``motion_io.mapping`` holds the skeleton
  tables).
* ``real_motion/`` — real motion-capture clips (``SOURCE.md``): ``cmu_heldout/`` (CMU subject
  02, the real-motion test), ``cmu_pool/`` (CMU subjects 01, 03, 05, 06, 07, for the extra
  people or the labelled subjects), ``deepmimic/`` (15 DeepMimic clips from pybullet_data,
  zlib).

The dataset writer is :mod:`tfrecords_tools.synthesize` (``SynthConfig``, ``generate``).
"""
