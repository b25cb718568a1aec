"""Motion-capture import: BVH, Acclaim ASF/AMC, C3D, .npz joint arrays and DeepMimic
motion files -> takes of the 17 Human3.6M joints in the generator's world, retargeted to
a subject's body.

One module per format (:mod:`.bvh`, :mod:`.acclaim`, :mod:`.c3d`, :mod:`.npz`,
:mod:`.deepmimic`), the
skeleton conventions' tables in :mod:`.mapping`, the shared steps in :mod:`.retarget`.

Pipeline of :func:`load_source` (per file, subject-independent):
  read -> fill C3D gaps up to ``max_gap_ms`` -> map to 17 joints (a table) -> mm, Z up ->
  trim frames missing a joint at either end -> refuse remaining gaps and zero-length bones
  -> resample to 50 fps.
Then :func:`subject_takes` (per subject): retarget (bone directions kept, the subject's
bone lengths, root path scaled by the leg-length ratio) -> floor (the take's lowest ankle
at the subject's ankle height) -> loop up to ``min_frames`` (if set) -> cut into windows
-> per window: treadmill (pelvis x/y removed per frame) or centring (mean pelvis x/y at
the origin).

The generator's own ``joints3d_world`` .npz is already in that world: it is rendered as
given (only ``window`` and ``treadmill`` apply).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import List, Optional, Tuple

import numpy as np

from tfrecords_tools.synth import body as body_lib
from tfrecords_tools.synth.motion_io import acclaim, bvh, c3d, deepmimic, mapping, npz, retarget
from tfrecords_tools.synth.motion_io.source import MotionFileError, RawMotion, fail

__all__ = ["ImportOptions", "Source", "MotionFileError", "RawMotion", "EXTENSIONS",
           "read_raw", "load_source", "subject_takes", "discover", "action_name",
           "files_of"]

# Motion files by extension (lower case). An .asf is a skeleton, not a take. DeepMimic
# files: ``.deepmimic``; pybullet's own ``.txt`` name is read when given as one file, but
# a folder's .txt files (READMEs, licences) are not motion.
EXTENSIONS = (".bvh", ".amc", ".c3d", ".npz", ".deepmimic")
UNITS = ("auto",) + tuple(retarget.NAMED_UNITS)
UP_AXES = ("auto", "y", "z")


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    """How files are read and normalised (the generator's ``motion_*`` settings).

    Attributes:
      mapping: JSON file joint -> point spec (:mod:`.mapping`); None: the built-in tables.
      units: ``auto`` (the file's declared units, else inferred from the body's size) or
        one of mm, cm, in, m, cmu (CMU's 1/0.45 inch, never inferred).
      up_axis: ``auto`` (the format's convention: BVH/ASF Y, C3D/npz Z), ``y`` or ``z``.
      fps: the file's frame rate when it stores none or a wrong one (0: from the file;
        AMC: 120).
      max_gap_ms: C3D gaps up to this long are interpolated linearly; longer ones refused.
      window: frames (at 50 fps) per take; 0: one take per file.
      treadmill: remove the pelvis' horizontal position per frame (walking in place).
      retarget: give each subject its own bone lengths (False: the file's skeleton).
      min_frames: takes shorter than this are looped up to it before windowing
        (:func:`.retarget.loop`; 0: as long as the file).
    """

    mapping: Optional[str] = None
    units: str = "auto"
    up_axis: str = "auto"
    fps: float = 0.0
    max_gap_ms: float = 100.0
    window: int = 0
    treadmill: bool = False
    retarget: bool = True
    min_frames: int = 0


@dataclasses.dataclass
class Source:
    """One file's take in the generator's world, before retargeting.

    Attributes:
      path: the motion file.
      joints: [T, 17, 3] mm, Z up, 50 fps.
      table: the mapping table used (``h36m-world`` for the generator's own .npz).
      as_given: True for the generator's own .npz (no retargeting, floor or centring).
      cyclic: the file's take loops (:attr:`RawMotion.cyclic`).
    """

    path: str
    joints: np.ndarray
    table: str
    as_given: bool = False
    cyclic: bool = False


def read_raw(path: str, options: ImportOptions = ImportOptions()) -> RawMotion:
    """Reads ``path`` with the reader of its extension (file units and axes)."""
    if not os.path.isfile(path):
        raise fail(path, "is a directory, expected a motion file" if os.path.isdir(path)
                   else "does not exist")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".bvh":
        raw = bvh.read(path)
    elif ext == ".amc":
        raw = acclaim.read(path, fps=options.fps or None)
    elif ext == ".c3d":
        raw = c3d.read(path)
    elif ext == ".npz":
        raw = npz.read(path)
    elif ext in (".deepmimic", ".txt"):
        raw = deepmimic.read(path)
    elif ext == ".asf":
        raise fail(path, "is an ASF skeleton; pass its .amc motion files (the skeleton is "
                         "found beside them)")
    else:
        raise fail(path, f"unknown extension {ext!r}; expected one of {list(EXTENSIONS)}")
    if options.fps:
        raw.fps = float(options.fps)
    if not raw.fps or raw.fps <= 0:
        raise fail(path, "stores no frame rate; pass --motion_fps")
    return raw


def load_source(path: str, options: ImportOptions = ImportOptions(),
                table: Optional[dict] = None) -> Source:
    """Reads, maps and normalises one motion file (see the module docstring).

    Args:
      path: the file.
      options: import settings.
      table: a user mapping table (default: loaded from ``options.mapping``, if set).

    Raises:
      MotionFileError: one line naming the file and what is wrong with it.
      ValueError: a bad ``--motion_mapping`` file (naming the flag).
    """
    raw = read_raw(path, options)
    if raw.h36m:
        joints = raw.points
        bad = ~np.isfinite(joints).all(axis=(1, 2))
        if bad.any():
            raise fail(path, f"NaN or inf in frames {np.flatnonzero(bad)[:10].tolist()}")
        retarget.check_size(path, joints)
        return Source(path, retarget.resample(joints, raw.fps), "h36m-world", as_given=True)
    if table is None and options.mapping:
        table = mapping.load_table(options.mapping)
    max_gap = int(round(options.max_gap_ms * raw.fps / 1000.0))
    points = retarget.fill_gaps(raw.points, max_gap)
    joints, used, _ = mapping.to_h36m(dataclasses.replace(raw, points=points), table)
    if options.units != "auto":
        unit = retarget.NAMED_UNITS[options.units]
    else:
        unit = raw.mm_per_unit or retarget.guess_mm_per_unit(path, joints)
    up = raw.up_axis if options.up_axis == "auto" else options.up_axis
    joints = retarget.trim_and_check(path, retarget.to_world(joints, unit, up), max_gap, raw.fps)
    retarget.check_size(path, joints)
    if len(joints) < 2:
        raise fail(path, "fewer than 2 complete frames")
    return Source(path, retarget.resample(joints, raw.fps), used, cyclic=raw.cyclic)


def subject_takes(source: Source, shape: Optional[body_lib.BodyShape],
                  options: ImportOptions = ImportOptions()) -> List[np.ndarray]:
    """The takes [T, 17, 3] of ``source`` for a person of body ``shape`` (None: the
    file's own skeleton), cut into windows of ``options.window`` frames."""
    joints = source.joints
    if not source.as_given:
        if options.retarget and shape is not None:
            lengths = retarget.subject_bone_lengths(shape)
            src_len = np.median(retarget.bone_lengths(joints), axis=0)
            joints = retarget.retarget(joints, lengths,
                                       retarget.leg_length(lengths) / retarget.leg_length(src_len))
        joints = retarget.put_on_floor(joints, retarget.height_of(
            shape if options.retarget else None, joints))
    if options.min_frames:
        joints = retarget.loop(joints, options.min_frames, source.cyclic)
    takes = []
    for s, e in retarget.windows(len(joints), options.window):
        take = joints[s:e]
        if options.treadmill:
            take = retarget.treadmill(take)
        elif not source.as_given:
            take = retarget.centre(take)
        takes.append(take)
    return takes


def action_name(path: str) -> str:
    """Action name of a motion file: its stem with everything but letters and digits
    removed (``01_02.amc`` -> ``0102``, ``my dance.bvh`` -> ``mydance``)."""
    return re.sub(r"[^A-Za-z0-9]+", "", os.path.splitext(os.path.basename(path))[0]) or "Motion"


def discover(folder: str) -> List[Tuple[str, str]]:
    """``(action, path)`` of every motion file in ``folder`` (not recursive, sorted).

    Each file is one action named by :func:`action_name`; .asf skeletons are used by the
    .amc files beside them, not takes themselves.

    Raises:
      ValueError: naming ``--motion_dir``: no such folder, no motion file, or two files
        with the same action name.
    """
    if not os.path.isdir(folder):
        raise ValueError(f"--motion_dir {folder} is not a directory")
    files = sorted(f for f in os.listdir(folder) if os.path.splitext(f)[1].lower() in EXTENSIONS)
    if not files:
        raise ValueError(f"--motion_dir {folder} holds no motion file; expected "
                         f"{', '.join(EXTENSIONS)} files")
    out, seen = [], {}
    for f in files:
        name = action_name(f)
        if name in seen:
            raise ValueError(f"--motion_dir {folder}: {seen[name]} and {f} both give action "
                             f"name {name!r}; rename one")
        seen[name] = f
        out.append((name, os.path.join(folder, f)))
    return out


def files_of(path: str, options: ImportOptions = ImportOptions()) -> List[str]:
    """Every file a take depends on (the motion file, an AMC's skeleton, the mapping)."""
    out = [path]
    if path.lower().endswith(".amc"):
        asf = acclaim.find_skeleton(path)
        if asf:
            out.append(asf)
    if options.mapping:
        out.append(options.mapping)
    return out
