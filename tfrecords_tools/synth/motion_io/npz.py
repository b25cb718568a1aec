"""NumPy ``.npz`` joint arrays: the generator's own format and AMASS-style SMPL joints.

* ``joints3d_world`` (or a single array) [T, 17, 3]: Human3.6M joints in the generator's
  world (mm, Z up, 50 fps): rendered as given (no retargeting, floor or centring).
* ``joints`` [T, J, 3] in metres, Z up (AMASS), J = 22 (SMPL body), 24 (SMPL), 52
  (SMPL-H) or 55 (SMPL-X): the first 22/24 follow
  :data:`~tfrecords_tools.synth.motion_io.mapping.SMPL_JOINT_NAMES`; with a
  ``joint_names`` array the names are taken from it instead (any convention the mapping
  tables or ``--motion_mapping`` know). Frame rate from ``mocap_framerate`` (AMASS) or
  ``mocap_frame_rate`` (newer AMASS releases), else ``--motion_fps``.
"""
from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from tfrecords_tools import schema
from tfrecords_tools.runtime import locks
from tfrecords_tools.synth.motion_io.mapping import SMPL_JOINT_NAMES
from tfrecords_tools.synth.motion_io.source import RawMotion, fail

H36M_FPS = 50.0


def read(path: str) -> RawMotion:
    """Reads an .npz of joint positions (see the module docstring).

    Raises:
      MotionFileError: not an .npz, no joint array, a bad shape or no frame rate.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.keys()}
    except (OSError, zlib.error, EOFError, ValueError, AttributeError, TypeError,
            zipfile.BadZipFile) as e:
        raise fail(path, f"is not a readable .npz archive ({type(e).__name__}: {e}); expected "
                         f"numpy.savez output with 'joints3d_world' [T, 17, 3] in mm or "
                         f"'joints' [T, J, 3] in metres") from None
    if "joints" in arrays:
        joints = np.asarray(arrays["joints"])
        if "joint_names" in arrays:
            names = tuple(str(n) for n in arrays["joint_names"])
        else:
            names = SMPL_JOINT_NAMES[:joints.shape[1]] + tuple(
                f"joint{i}" for i in range(len(SMPL_JOINT_NAMES), joints.shape[1])) \
                if joints.ndim == 3 else ()
        if joints.ndim != 3 or joints.shape[2] != 3 or joints.shape[1] != len(names) \
                or joints.shape[0] < 2:
            raise fail(path, f"'joints' has shape {joints.shape}, expected [T >= 2, J, 3] "
                             f"with J = len(joint_names) or an SMPL count (22, 24, 52, 55)")
        if "joint_names" not in arrays and joints.shape[1] < 22:
            raise fail(path, f"'joints' has {joints.shape[1]} joints and no 'joint_names'; "
                             f"expected SMPL's 22 body joints or more")
        rate = next((float(np.asarray(arrays[k]).ravel()[0]) for k in
                     ("mocap_framerate", "mocap_frame_rate", "fps") if k in arrays), None)
        return RawMotion(path=path, names=names, points=_floats(path, joints), fps=rate or 0.0,
                         mm_per_unit=1000.0, up_axis="z", format="amass npz")
    keys = list(arrays)
    chosen = arrays.get("joints3d_world", arrays[keys[0]] if len(keys) == 1 else None)
    if chosen is None:
        raise fail(path, f"holds arrays {keys}; expected 'joints3d_world' [T, 17, 3] (mm) or "
                         f"'joints' [T, J, 3] (metres, AMASS)")
    joints = np.asarray(chosen)
    if joints.ndim != 3 or joints.shape[1:] != (schema.NUM_JOINTS, 3) or joints.shape[0] < 2:
        raise fail(path, f"joints have shape {joints.shape}, expected [T >= 2, "
                         f"{schema.NUM_JOINTS}, 3] (world mm, Human3.6M 17-joint order)")
    from tfrecords_tools import skeleton
    return RawMotion(path=path, names=skeleton.JOINT_NAMES, points=_floats(path, joints),
                     fps=H36M_FPS, mm_per_unit=1.0, up_axis="z", format="npz", h36m=True)


def write(path: str, joints: np.ndarray, names: tuple, fps: float) -> None:
    """Writes joints [T, J, 3] (mm, Z up) as an AMASS-style ``.npz`` that :func:`read`
    reads back: ``joints`` in metres (float32, compressed), ``joint_names`` and ``fps``.

    This is how imported takes are stored compactly (e.g. the committed real-motion clips,
    17 Human3.6M-named joints at 50 fps): unlike ``joints3d_world`` they are retargeted to
    each subject like any other imported file. Written to a temporary name, then renamed.
    """
    joints = np.asarray(joints, np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (len(names), 3):
        raise ValueError(f"{path}: joints have shape {joints.shape}, expected "
                         f"[T, {len(names)}, 3]")
    tmp = locks.temp_path(path, ".npz")  # the project's temporary name (np adds no suffix)
    try:
        np.savez_compressed(tmp, joints=(joints / 1000.0).astype(np.float32),
                            joint_names=np.asarray(names), fps=np.float64(fps))
        os.replace(tmp, path)
    finally:  # Failed or interrupted: no temporary left behind.
        if os.path.exists(tmp):
            os.remove(tmp)


def _floats(path: str, joints: np.ndarray) -> np.ndarray:
    if not np.issubdtype(joints.dtype, np.number):
        raise fail(path, f"joints have dtype {joints.dtype}, expected floats")
    return joints.astype(np.float64)
