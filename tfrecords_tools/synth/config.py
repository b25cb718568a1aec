"""The settings of a synthetic dataset and of one ``tfrecords_tools.synthesize`` run.

:class:`SynthConfig` is what a dataset stores in its manifest; :class:`SynthesizeRun` is
one invocation of the binary around it (where to write, workers, extra people). They live
here, below the binary, so that libraries (the experiment suites' row overrides) can take
the binary's settings without importing it; the flags come from their fields through the
flag engine (:mod:`tfrecords_tools.runtime.flags`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from tfrecords_tools import beam_io, schema
from tfrecords_tools.runtime.flags import setting
from tfrecords_tools.synth import body as body_lib
from tfrecords_tools.synth import clutter as clutter_lib
from tfrecords_tools.synth import motion as motion_lib
from tfrecords_tools.synth import motion_io

LOOK_VARIATIONS = ("subject", "take")


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Settings of a synthetic dataset (all stored in the manifest).

    Attributes:
      subjects: Human3.6M-style subject names (S1 ... S11) and extra synthetic people
        (U01 ... U99, see ``--extra_subjects``), each with its own body and look.
      actions: procedural actions (see :data:`tfrecords_tools.synth.motion.ACTIONS`).
      takes: takes per (subject, action), each with its own random variation.
      num_frames: frames per take at 50 fps, before the motion filter.
      clip_length: kept timesteps per record (256 fits pairs up to d_max=128 apart).
      image_size: crop side in pixels.
      background: False for the black background-removed look, True for a static room.
      min_motion_mm: a frame is kept when some joint (root-relative) moved more than this
        since the last kept frame (0 keeps all). 4 mm keeps about 73% of the procedural
        frames, close to the paper's "on average every fourth frame dropped".
      seed: fixes bodies, looks, motions, crops; same seed, same bytes.
      motion_file: optional motion file rendered for every subject instead of the
        procedural actions, under the action name of its stem
        (:func:`tfrecords_tools.synth.motion_io.action_name`): the generator's .npz
        (``joints3d_world`` [T, 17, 3] mm, rendered as given), or motion capture (.bvh,
        .amc with its .asf, .c3d, AMASS-style .npz ``joints``) imported by
        :mod:`tfrecords_tools.synth.motion_io` and retargeted to each subject.
      motion_dir: a folder of motion files (not recursive), each one action named by its
        stem; exclusive with ``motion_file``.
      motion_mapping: JSON file mapping the 17 joints to the file's joints/markers (a name,
        a list to average, ``{"from", "to", "t"}``); default: the built-in tables
        (:mod:`tfrecords_tools.synth.motion_io.mapping`).
      motion_window: frames (50 fps) per take: a file is cut into consecutive windows,
        each a take (0: one take per file).
      treadmill: remove the pelvis' horizontal position per frame (heading kept): long
        walks stay in the capture volume.
      motion_fps: frame rate of the motion files when they store none or a wrong one (0:
        from the file; AMC: 120).
      motion_units: ``auto`` (declared by the file, else inferred from the body's size) or
        mm, cm, in, m, cmu (CMU's 1/0.45 inch; never inferred).
      motion_up_axis: ``auto`` (the format's convention: BVH/ASF Y, C3D/npz Z), y or z.
      motion_max_gap_ms: C3D gaps up to this long are interpolated; longer ones refused.
      motion_retarget: give each subject its own bone lengths (False: the capture's).
      crop_margin: crop box margin around the projected joints (fraction of the side).
      crop_jitter: random crop shift/scale as a fraction of the side (augmentation-like
        variation real detectors have).
      jpeg_quality: JPEG quality 1-100.
      labels: store 3D joints (False writes an unlabelled dataset, like raw video).
      cameras: camera rig; None = the Human3.6M rig (cameras.h36m_rig()).
      look_variation: ``"subject"``: one look per person (as Human3.6M subjects wear one
        outfit); ``"take"``: a new outfit per take, with the asymmetric cues (strap, watch,
        stripe) on sides drawn per take, so no per-person left/right cue can solve the flip
        task (:func:`tfrecords_tools.synth.body.take_look`).
      extra_actions: the motion pool of the extra people U01...: standard actions and
        pre-training-only families (:data:`~tfrecords_tools.synth.motion.EXTRA_ACTIONS`).
        Empty: the extra people perform ``actions``, like everyone else.
      extra_actions_per_subject: each extra person performs this many actions of the pool,
        drawn per person by seed (0: all of them). Many people, each in a few motions, cost
        no more frames than few people in many.
      unseen_actions: held-out motion families
        (:data:`~tfrecords_tools.synth.motion.UNSEEN_ACTIONS`) performed only by the test
        subjects (S9, S11): the unseen-motion test set. Never given to anyone else.
      extra_motion_dir: a folder of motion files (any importer format, each one action
        named by its stem) added to the extra people's pool beside the procedural actions;
        imported like ``motion_dir`` (``motion_window``, ``treadmill``, retargeting) and
        looped to ``num_frames`` (cyclic DeepMimic clips repeat, others play back and forth).
      extra_motion_only: leave the procedural actions out of the extra people's pool.
      labelled_extra_motions: the labelled training subjects (the Human3.6M-named ones but
        S9/S11) also perform this many clips of ``extra_motion_dir`` each, beside
        ``actions``, drawn per subject by seed (0: none; the pool's size or more: all), so
        the pose head's labels hold real motion too. Test subjects never perform them.
      extra_motion_mirror: each ``extra_motion_dir`` clip is also performed as its mirror
        image (left and right swapped: action ``<clip>mirror``), doubling the pool.
      labelled_motion_only: ``extra_motion_dir``'s clips go only to the labelled training
        subjects (through ``labelled_extra_motions``); the extra people keep the procedural
        pool.
      test_motion_dir: a folder of motion files performed only by the test subjects (S9,
        S11): the real-motion test set (clips never given to anyone else; imported and looped
        as ``extra_motion_dir``).
      bystanders: clutter: other people (own bodies and looks) walking around near the
        labelled person, crossing in front of or behind them; never labelled.
      moving_objects: clutter: boxes and balls crossing the scene (rolling, carried, thrown).
      lighting: clutter: ``"constant"``; ``"drift"`` (brightness and colour balance drift by
        20-35% over the take); ``"switch"`` (a light switches on or off mid-take).
      sensor_noise: clutter: Gaussian noise per pixel, standard deviation in grey levels.
      textured_room: clutter: textured walls and floor, posters and furniture-like boxes.
      (Clutter needs ``background``; all clutter off, the default, leaves datasets
      byte-identical to those made before it existed; see
      :mod:`tfrecords_tools.synth.clutter`.)
    """

    subjects: tuple = setting(body_lib.KNOWN_SUBJECTS, "Subjects to generate.")
    actions: tuple = setting(motion_lib.ACTIONS, "Actions to generate.")
    takes: int = setting(2, "Takes per (subject, action).", minimum=1)
    num_frames: int = setting(500, "Frames per take (50 fps).", minimum=schema.MIN_CLIP_LENGTH,
                              reason=schema.MIN_CLIP_REASON)
    clip_length: int = setting(256, "Kept timesteps per record.", minimum=schema.MIN_CLIP_LENGTH,
                               reason=schema.MIN_CLIP_REASON)
    image_size: int = setting(160, "Crop side in pixels.", minimum=schema.MIN_IMAGE_SIZE,
                              maximum=schema.MAX_IMAGE_SIZE)
    background: bool = setting(False, "Render the static room behind the person.")
    min_motion_mm: float = setting(4.0, "Drop frames where no joint moved this much since the "
                                   "last kept one.", minimum=0, below=500)
    seed: int = setting(0, "Random seed (same seed, same dataset).", unbounded=True)
    motion_file: Optional[str] = setting(
        None, "Optional motion file rendered instead of the procedural actions (action = its "
        "stem): the generator's .npz (joints3d_world [T, 17, 3] mm, as given) or motion "
        "capture: .bvh, .amc (+ .asf beside it), .c3d, AMASS .npz (joints, metres).", path=True)
    crop_margin: float = setting(0.22, flag=False, minimum=0, maximum=1)
    crop_jitter: float = setting(0.04, "Crop box jitter (fraction of the side).", minimum=0,
                                 maximum=0.25)
    jpeg_quality: int = setting(90, "JPEG quality.", minimum=1, maximum=100)
    labels: bool = setting(True, "Store 3D joints.")
    cameras: Optional[tuple] = setting(None, flag=False)
    look_variation: str = setting(
        "subject", "subject: one outfit per person; take: a new outfit per take, with the "
        "left/right cues (strap, watch, stripe) on sides drawn per take.",
        choices=LOOK_VARIATIONS)
    extra_actions: tuple = setting(
        (), "Motion pool of the extra people (standard actions and the pre-training families "
        f"{list(motion_lib.EXTRA_ACTIONS)}); empty: --actions.")
    extra_actions_per_subject: int = setting(
        0, "Actions of the pool each extra person performs (drawn per person; 0: all).",
        minimum=0, reason="0: every action of the pool")
    unseen_actions: tuple = setting(
        (), "Held-out motion families only the test subjects S9/S11 perform (the unseen-motion "
        f"test set), from {list(motion_lib.UNSEEN_ACTIONS)}.")
    motion_dir: Optional[str] = setting(
        None, "Folder of motion files (as --motion_file), each one action named by its stem.",
        path=True)
    motion_mapping: Optional[str] = setting(
        None, "JSON: the 17 joints -> the file's joint/marker names (a name, a list to average, "
        "{from, to, t}); default: the built-in CMU/Mixamo BVH, CMU ASF, SMPL, Plug-in Gait "
        "tables.")
    motion_window: int = setting(
        0, "Cut each motion file into takes of this many frames at 50 fps (0: one take).",
        minimum=0)
    treadmill: bool = setting(False, "Remove the pelvis' horizontal motion per frame (heading "
                              "kept): walk in place.")
    motion_fps: float = setting(0.0, "Frame rate of the motion files if they store none (0: "
                                "from the file; AMC 120).", minimum=0, maximum=10000)
    motion_units: str = setting("auto", "Units of the motion files: auto (declared by the "
                                "file, else inferred from the body's size), mm, cm, in, m or cmu (CMU's "
                                "1/0.45 inch, as its BVH release uses; never inferred).",
                                choices=motion_io.UNITS)
    motion_up_axis: str = setting("auto", "Vertical axis of the motion files: auto (BVH/ASF y, "
                                  "C3D/npz z), y or z.", choices=motion_io.UP_AXES)
    motion_max_gap_ms: float = setting(100.0, "C3D marker gaps up to this long are "
                                       "interpolated; longer ones are refused.", minimum=0,
                                       maximum=10000)
    motion_retarget: bool = setting(True, "Give each subject its own bone lengths (directions "
                                    "from the capture).")
    extra_motion_dir: Optional[str] = setting(
        None, "Folder of motion files (as --motion_dir) added to the extra people's pool beside "
        "the procedural actions; looped to --num_frames (e.g. "
        "tfrecords_tools/synth/real_motion/cmu_pool).", path=True)
    extra_motion_only: bool = setting(False, "Leave the procedural actions out of the extra "
                                      "people's pool.")
    labelled_extra_motions: int = setting(
        0, "The labelled training subjects (S1, S5-S8) also perform this many clips of "
        "--extra_motion_dir each, drawn per subject (0: none; the pool's size: all).",
        minimum=0)
    extra_motion_mirror: bool = setting(
        False, "Each --extra_motion_dir clip is also performed as its mirror image (left and "
        "right swapped; action <clip>mirror): twice the pool.")
    labelled_motion_only: bool = setting(
        False, "Only the labelled training subjects perform --extra_motion_dir's clips "
        "(through --labelled_extra_motions); the extra people keep the procedural actions.")
    test_motion_dir: Optional[str] = setting(
        None, "Folder of motion files only S9/S11 perform: the real-motion test set (e.g. "
        "tfrecords_tools/synth/real_motion/cmu_heldout).", path=True)
    bystanders: int = setting(0, "Clutter: other people walking around near the labelled one "
                              "(never labelled; needs --background).", minimum=0,
                              maximum=clutter_lib.MAX_BYSTANDERS)
    moving_objects: int = setting(0, "Clutter: boxes and balls crossing the scene (needs "
                                  "--background).", minimum=0, maximum=clutter_lib.MAX_OBJECTS)
    lighting: str = setting("constant", "Clutter: constant; drift (brightness and colour drift "
                            "20-35% over the take); switch (a light switches mid-take).",
                            choices=clutter_lib.LIGHTING)
    sensor_noise: float = setting(0.0, "Clutter: Gaussian sensor noise, standard deviation in "
                                  "grey levels.", minimum=0, maximum=clutter_lib.MAX_NOISE)
    textured_room: bool = setting(False, "Clutter: textured walls and floor, posters and "
                                  "furniture (needs --background).")

    @property
    def uses_motion_files(self) -> bool:
        """True when takes come from motion files instead of the procedural actions."""
        return self.motion_file is not None or self.motion_dir is not None

    @property
    def has_clutter(self) -> bool:
        return any(getattr(self, k) != v for k, v in CLUTTER_DEFAULTS.items())


# The clutter settings and their "off" values (left out of the manifest when off, so
# datasets made before clutter existed still resume).
CLUTTER_DEFAULTS = {"bystanders": 0, "moving_objects": 0, "lighting": "constant",
                    "sensor_noise": 0.0, "textured_room": False}


@dataclasses.dataclass(frozen=True)
class SynthesizeRun(beam_io.WriterRunner):
    """One invocation of the binary: the dataset's settings, and what is not one of them
    (where to write, how many processes, extra people added to ``subjects``).

    Attributes:
      output_dir: dataset directory (created; resumed if present).
      extra_subjects: adds the extra people U01...UN to ``dataset.subjects``.
      num_workers: parallel writer processes.
      runner, beam_options: local processes or an Apache Beam runner
        (:class:`tfrecords_tools.beam_io.WriterRunner`).
      dataset: the settings stored in the manifest.
    """

    output_dir: str = setting(None, "Dataset directory (created; resumed if present).",
                              required=True, path=True)
    extra_subjects: int = setting(
        0, "Also generate N extra synthetic people U01..UN (extra unlabelled pre-training "
        "subjects; pass them to pretrain --train_subjects, e.g. as U*).", minimum=0,
        maximum=body_lib.MAX_EXTRA_SUBJECTS)
    num_workers: int = setting(1, "Parallel writer processes.", minimum=1)
    dataset: SynthConfig = setting(factory=SynthConfig)

    def config(self) -> SynthConfig:
        """The dataset's settings, the extra people among the subjects."""
        return dataclasses.replace(self.dataset, subjects=tuple(self.dataset.subjects)
                                   + body_lib.extra_subjects(self.extra_subjects))
