"""Camera calibration files as rigs write them -> ``{camera name: cameras.Camera}``.

    python -m tfrecords_tools.calibration --input=cams.qca.txt --output=calibration.json

One module knows every format; each reader returns cameras in the project's conventions
(``tfrecords_tools/cameras.py``: world in mm, ``X_cam = R X_world + t``, OpenCV camera
frame x right / y down / z forward, pixel centres at integers, distortion (k1, k2, p1, p2,
k3)), and every camera passes :func:`validate` (one line naming file, camera and field).
The format is found from the name and, where the name is ambiguous, the content; the
parsers follow the formats' published descriptions:

``json``: this project's ``calibration.json``::

    {"cameras": {"<name>": {"fx", "fy", "cx", "cy", "width", "height",
        "rotation" (3x3, world->camera) + "translation" (mm)
        | "q_cam_to_world" (w, x, y, z) + "centre" (mm),
        "distortion": [k1, k2, p1, p2, k3] (optional)}}}

``qca`` (Qualisys QTM calibration export, ``*.qca``, ``*.qca.txt``): XML ``<calibration>
<cameras><camera serial=.. active=..>`` with ``<fov_video left top right bottom>`` (the video
window on the sensor, inclusive pixel bounds), ``<transform x y z r11..r33>`` and
``<intrinsic focalLengthU focalLengthV centerPointU centerPointV skew sensorMinU..
radialDistortion1..3 tangentalDistortion1..2>`` (QTM spells "tangental"; "tangential" is
accepted too). Camera name: the serial. Conventions, and why:

* Intrinsics are in sub-pixel units. The factor is the sensor's extent in those units over
  its extent in pixels, ``(sensorMaxU - sensorMinU) / (fov_video_max.right -
  fov_video_max.left)`` (``fov_marker_max`` if there is no video window), rounded to an
  integer (public converters hard-code 64). fx, fy = focalLength{U,V} / factor.
* The principal point is relative to the sensor; the video holds only the ``fov_video``
  window, so cx = centerPointU / factor - left, cy = centerPointV / factor - top. The image
  size is the window's, ``right - left + 1`` by ``bottom - top + 1``; a video recorded
  binned or at a lower resolution (same aspect) is handled by the rig's intrinsics scaling.
* ``transform``: x, y, z is the camera centre in world mm. r11..r33 give the camera's
  orientation. Qualisys publishes the field names (its SDK's data model) but not their
  geometry; the two public converters found (Pose2Sim's and a markerless-pose toolkit's)
  agree on taking the matrix M with ``M[i][j] = r_ij`` as the map from world directions to
  QTM's camera axes, i.e. the file lists the camera-to-world rotation (M^T) column by
  column, and on QTM's camera frame having y up and looking along -z (the computer
  graphics convention; OpenCV's has y down and looks along +z). So
  ``R = diag(1, -1, -1) M`` and ``t = -R centre``. A reading with the wrong axis
  convention would put the world origin (QTM's L-frame, inside the capture volume) behind
  the cameras; that is checked and logged as a warning.
* Distortion: radialDistortion1..3 and tangentalDistortion1..2 are taken as the
  dimensionless Brown coefficients of normalised coordinates, in OpenCV order (k1, k2, p1,
  p2, k3). QTM does not publish their normalisation; one public converter divides them by
  the sub-pixel factor as well. Video-camera coefficients are small, so either reading
  moves points by well under a pixel near the image centre; check the image border of a
  strongly distorting lens before relying on it.
* Cameras with ``active="0"`` are left out (they have no usable calibration).

``toml`` (Anipose / aniposelib / Pose2Sim ``calibration.toml``): one ``[cam_N]`` table per
camera with ``name``, ``size = [w, h]``, ``matrix`` (3x3 K), ``distortions`` (k1, k2, p1,
p2[, k3]), ``rotation`` (Rodrigues vector, world->camera) and ``translation`` (world->camera,
in the units of the calibration board for aniposelib, metres for Pose2Sim); ``[metadata]``
is skipped; ``fisheye = true`` cameras are refused (other lens model).

``opencv`` (``cv2.FileStorage`` YAML or XML, ``%YAML:1.0`` / ``<opencv_storage>``): a camera is
a set of nodes ``camera_matrix`` | ``cameraMatrix`` | ``K``, ``dist_coeffs`` | ``distCoeffs`` |
``distortion_coefficients`` | ``D``, ``R`` (3x3 or Rodrigues) | ``rvec``, ``T`` | ``tvec`` |
``t``, ``image_width`` + ``image_height`` | ``image_size`` [w, h]: at the top level (one camera
per file, named by its ``camera_name`` / ``name`` string or else the file stem), in named
top-level maps (one camera each, named by the key), or EasyMocap-style with a ``names`` list
and ``K_<name>``, ``dist_<name>``, ``R_<name>`` / ``Rot_<name>``, ``T_<name>``. A folder
of such files is read as one calibration; nodes of one camera may be split across files
(intrinsics in one, extrinsics in another). R, T are world->camera.

``h36m`` (Human3.6M-style JSON): ``{"<camera id>": {"R": 3x3 world->camera, "t": mm
(X_cam = R X + t) or "T": camera centre mm (X_cam = R (X - T), the release's cameras.h5
convention), "f": [fx, fy], "c": [cx, cy], "k": [k1, k2, k3], "p": [p1, p2], "width",
"height"}}`` (optionally under ``"cameras"``); the release's conventions live in
``tfrecords_tools/h36m_calibration.py``. A Human3.6M camera id without a size gets the
release's frame size.

Units: QCA, H36M and ``calibration.json`` are in mm. TOML and OpenCV files carry whatever
unit the calibration board had: with ``units="auto"`` they are read as metres when every
camera is within 50 units of the world origin (no rig has cameras 50 mm from the origin,
few have them 50 m away) and as mm otherwise, and the choice is logged; ``units="m"`` or
``"mm"`` overrides (for every format).

Video names: :func:`match_cameras` gives each video the camera of the same name, or else
the one camera whose name appears in the video's file name as a separate token (delimited
by characters other than letters and digits), so QTM's ``Walk_Miqus_3_28496.avi`` gets
camera ``28496``.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import logging
import math
import os
import re
import tomllib
import xml.etree.ElementTree as ET
from typing import Mapping, Optional, Sequence

import cv2
import numpy as np

from tfrecords_tools import cameras, h36m_calibration
from tfrecords_tools.runtime import cli, fileio
from tfrecords_tools.runtime import flags as flag_engine
from tfrecords_tools.runtime.flags import setting

log = logging.getLogger(__name__)

FORMATS = ("auto", "json", "qca", "toml", "opencv", "h36m")
UNITS = ("auto", "mm", "m")
# File names a rig folder or sequence folder may hold its calibration under.
CALIBRATION_NAMES = ("calibration.json", "calibration.toml", "calibration.yml",
                     "calibration.yaml", "calibration.xml")
CALIBRATION_PATTERNS = ("*.qca", "*.qca.txt")
_METRE_LIMIT = 50.0        # auto units: every |t| below this -> metres
_ORTHONORMAL_TOL = 1e-3    # R R^T = I and det R = 1 within this
_ASPECT_TOL = 0.01         # relative difference of the x and y scale factors of a resize
_SKEW_LIMIT_PX = 0.5       # largest skew ignored (its effect at normalised y = 1)
_OPENCV_EXTENSIONS = (".yml", ".yaml", ".xml")


class CalibrationError(ValueError):
    """A calibration file is unreadable or a camera in it is unusable (one line)."""


# ---------------------------------------------------------------------------- validation


def validate(cam: cameras.Camera, where: str) -> cameras.Camera:
    """Returns ``cam`` when it is usable; else raises naming ``where``, camera and field.

    Raises:
      CalibrationError: non-finite or non-positive focal lengths or size, a rotation that
        is not orthonormal with det +1 (within 1e-3), non-finite translation, principal
        point or distortion.
    """
    name = cam.camera_id
    for field in ("fx", "fy"):
        v = getattr(cam, field)
        if not (math.isfinite(v) and v > 0):
            raise CalibrationError(f"{where}: camera {name!r} {field}={v!r}: expected a "
                                   f"positive finite focal length (pixels)")
    for field in ("cx", "cy"):
        v = getattr(cam, field)
        if not math.isfinite(v):
            raise CalibrationError(f"{where}: camera {name!r} {field}={v!r}: expected a "
                                   f"finite principal point (pixels)")
    for field in ("width", "height"):
        v = getattr(cam, field)
        if not v > 0:
            raise CalibrationError(f"{where}: camera {name!r} {field}={v!r}: expected a "
                                   f"positive image size (pixels)")
    r = np.asarray(cam.rotation, np.float64)
    if r.shape != (3, 3) or not np.all(np.isfinite(r)):
        raise CalibrationError(f"{where}: camera {name!r} rotation: expected 3x3 finite "
                               f"numbers, got shape {list(r.shape)}")
    err, det = float(np.abs(r @ r.T - np.eye(3)).max()), float(np.linalg.det(r))
    if err > _ORTHONORMAL_TOL or abs(det - 1) > _ORTHONORMAL_TOL:
        raise CalibrationError(f"{where}: camera {name!r} rotation is not a rotation matrix "
                               f"(max |R R^T - I| = {err:.3g}, det = {det:.4g}; expected "
                               f"orthonormal, det +1)")
    for field, shape in (("translation", (3,)), ("distortion", (5,))):
        a = np.asarray(getattr(cam, field), np.float64)
        if a.shape != shape or not np.all(np.isfinite(a)):
            raise CalibrationError(f"{where}: camera {name!r} {field}: expected {shape[0]} "
                                   f"finite numbers, got {a.tolist()}")
    return cam


def check_image_size(cam: cameras.Camera, width: int, height: int, where: str) -> None:
    """Refuses a ``width`` x ``height`` video that is not the calibrated image or a resize
    of it (same aspect ratio within 1%: a cropped video, or the wrong camera).

    Raises:
      CalibrationError: naming ``where``, the camera and both sizes.
    """
    sx, sy = width / cam.width, height / cam.height
    if abs(sx - sy) > _ASPECT_TOL * max(sx, sy):
        raise CalibrationError(
            f"{where}: camera {cam.camera_id!r} width x height: calibrated for "
            f"{cam.width}x{cam.height} but the video is {width}x{height} (another aspect "
            f"ratio: not a resize of the calibrated image; expected the calibrated size or a "
            f"resize of it)")


def fit_to_image(cam: cameras.Camera, width: int, height: int, where: str) -> cameras.Camera:
    """``cam`` for a ``width`` x ``height`` video: unchanged, or with its intrinsics scaled
    when the video is the calibrated image resized (see :func:`check_image_size`).

    Raises:
      CalibrationError: the aspect ratios differ.
    """
    if (cam.width, cam.height) == (width, height):
        return cam
    check_image_size(cam, width, height, where)
    log.warning("%s: camera %r: video is %dx%d, calibration is for %dx%d; scaling the "
                "intrinsics", where, cam.camera_id, width, height, cam.width, cam.height)
    return h36m_calibration.scale_camera(cam, width, height)


def match_cameras(calib: Mapping[str, cameras.Camera], names: Sequence[str],
                  where: str) -> dict[str, cameras.Camera]:
    """The camera of each video name (see the module docstring for the rule).

    Raises:
      CalibrationError: a video has no camera, or two videos share one; the message lists
        the unmatched names of both sides.
    """
    out, missing = {}, []
    for name in names:
        if name in calib:
            out[name] = calib[name]
            continue
        hits = [c for c in calib
                if re.search(rf"(?<![A-Za-z0-9]){re.escape(c)}(?![A-Za-z0-9])", name)]
        if len(hits) == 1:
            out[name] = calib[hits[0]]
        else:
            missing.append(name)
    used = [c.camera_id for c in out.values()]
    shared = sorted({c for c in used if used.count(c) > 1})
    unused = sorted(set(calib) - set(used))
    if missing or shared:
        problem = (f"videos {sorted(missing)} have no camera" if missing else
                   f"several videos match cameras {shared}")
        raise CalibrationError(
            f"calibration does not match the cameras found: {problem} in {where} (unmatched "
            f"calibration cameras: {unused}; it has {sorted(calib)}; videos: {sorted(names)}; "
            f"a video gets the camera of its name, or the one whose name is a separate token "
            f"of its file name)")
    if unused:
        log.info("%s: cameras %s have no video (not used)", where, unused)
    return out


# ---------------------------------------------------------------------------- entry points


def find(folder: str) -> Optional[str]:
    """The calibration file of a rig or sequence folder, or None.

    Raises:
      CalibrationError: the folder holds several candidate files.
    """
    found = [os.path.join(folder, n) for n in CALIBRATION_NAMES
             if os.path.isfile(os.path.join(folder, n))]
    for pattern in CALIBRATION_PATTERNS:
        found += sorted(p for p in glob.glob(os.path.join(folder, pattern))
                        if os.path.isfile(p) and p not in found)
    if len(found) > 1:
        raise CalibrationError(f"{folder}: several calibration files "
                               f"{[os.path.basename(p) for p in found]}; keep one")
    return found[0] if found else None


def detect_format(path: str) -> str:
    """The format of ``path`` from its name, else its first bytes.

    Raises:
      CalibrationError: missing, or neither name nor content is of a known format.
    """
    if os.path.isdir(path):
        return "opencv"
    if not os.path.isfile(path):
        raise CalibrationError(f"{path}: no such calibration file")
    lower = path.lower()
    if lower.endswith((".qca", ".qca.txt")):
        return "qca"
    if lower.endswith(".toml"):
        return "toml"
    if lower.endswith((".yml", ".yaml")):
        return "opencv"
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    except OSError as e:
        raise CalibrationError(f"{path}: not readable ({e.strerror})") from None
    if head.startswith("%YAML") or "<opencv_storage" in head:
        return "opencv"
    if re.search(r"<(calibration|cameras)\b", head):
        return "qca"
    if head.startswith("{"):
        return _json_flavour(path)
    if re.match(r"\[[A-Za-z_]", head):
        return "toml"
    raise CalibrationError(f"{path}: unknown calibration format (expected {FORMATS[1:]} by "
                           f"extension .json, .qca[.txt], .toml, .yml/.yaml/.xml, or content)")


def load(path: str, fmt: str = "auto", units: str = "auto") -> dict[str, cameras.Camera]:
    """Cameras of a calibration file (or folder of OpenCV files), by name, validated.

    Args:
      path: the file (a folder for OpenCV files).
      fmt: one of :data:`FORMATS`; "auto" detects it.
      units: translation units, one of :data:`UNITS` (see the module docstring).

    Raises:
      CalibrationError: unreadable file, unknown format, or an unusable camera.
    """
    if fmt not in FORMATS:
        raise CalibrationError(f"format {fmt!r}: expected one of {FORMATS}")
    if units not in UNITS:
        raise CalibrationError(f"units {units!r}: expected one of {UNITS}")
    if not os.path.exists(path):
        raise CalibrationError(f"{path}: no such calibration file")
    fmt = detect_format(path) if fmt == "auto" else fmt
    cams, native_mm = _READERS[fmt](path)
    if not cams:
        raise CalibrationError(f"{path}: no camera found ({fmt} format)")
    scale = _unit_scale(path, cams, units, native_mm)
    out = {}
    for name, cam in cams.items():
        if scale != 1.0:
            cam = dataclasses.replace(cam, translation=np.asarray(cam.translation) * scale)
        out[name] = validate(cam, path)
    if fmt == "qca":
        behind = [n for n, c in out.items() if c.translation[2] <= 0]
        if behind:
            log.warning("%s: the world origin is behind cameras %s; check the file's axis "
                        "convention (see tfrecords_tools/calibration.py)", path, behind)
    return out


def _unit_scale(path: str, cams: dict, units: str, native_mm: bool) -> float:
    if units == "m":
        return 1000.0
    if units == "mm" or native_mm:
        return 1.0
    far = max(float(np.linalg.norm(c.translation)) for c in cams.values())
    if far < _METRE_LIMIT:
        log.info("%s: every camera is within %.3g units of the world origin (< %g): reading "
                 "the translations as metres (set the units to mm to override)", path, far,
                 _METRE_LIMIT)
        return 1000.0
    log.info("%s: cameras up to %.4g units from the world origin: reading the translations "
             "as millimetres (set the units to m to override)", path, far)
    return 1.0


def to_json(cams: Mapping[str, cameras.Camera]) -> dict:
    """The ``calibration.json`` object of ``cams`` (rotation + translation form)."""
    return {"cameras": {name: {
        "fx": float(c.fx), "fy": float(c.fy), "cx": float(c.cx), "cy": float(c.cy),
        "width": int(c.width), "height": int(c.height),
        "rotation": np.asarray(c.rotation, np.float64).tolist(),
        "translation": np.asarray(c.translation, np.float64).tolist(),
        "distortion": np.asarray(c.distortion, np.float64).tolist()}
        for name, c in cams.items()}}


def save_json(path: str, cams: Mapping[str, cameras.Camera]) -> None:
    """Writes ``cams`` as ``calibration.json`` (temporary name, then rename)."""
    fileio.write_json_atomic(path, to_json(cams))


# ---------------------------------------------------------------------------- shared parsing


def _numbers(value, where: str, name: str, field: str) -> np.ndarray:
    try:
        return np.asarray(value, np.float64)
    except (TypeError, ValueError):  # Text, ragged rows, a table.
        raise CalibrationError(f"{where}: camera {name!r} {field!r} is not numeric") from None


def _array(value, shape, where: str, name: str, field: str) -> np.ndarray:
    a = _numbers(value, where, name, field)
    if a.size == int(np.prod(shape)) and a.shape != shape:
        a = a.reshape(shape)  # [[fx], [fy]] and the like.
    if a.shape != shape:
        raise CalibrationError(f"{where}: camera {name!r} {field!r} has shape "
                               f"{list(a.shape)}, expected {list(shape)} finite numbers")
    if not np.all(np.isfinite(a)):
        raise CalibrationError(f"{where}: camera {name!r} {field!r} holds NaN or inf "
                               f"({a.tolist()}); expected finite numbers")
    return a


def _distortion(value, where: str, name: str, field: str) -> np.ndarray:
    """OpenCV coefficients (k1, k2, p1, p2[, k3[, ...]]) -> the 5 the project models."""
    d = _numbers(value if value is not None else [], where, name, field).reshape(-1)
    if not np.all(np.isfinite(d)):
        raise CalibrationError(f"{where}: camera {name!r} {field!r} is not finite")
    if len(d) in (0, 4, 5):
        return np.concatenate([d, np.zeros(5 - len(d))])
    if len(d) > 5 and not np.any(d[5:]):
        return d[:5]
    raise CalibrationError(f"{where}: camera {name!r} {field!r} has {len(d)} coefficients "
                           f"{d.tolist()}; expected OpenCV's k1, k2, p1, p2[, k3] (the "
                           f"rational and thin-prism terms are not modelled)")


def _rotation(value, where: str, name: str, field: str) -> np.ndarray:
    """A 3x3 matrix, or a Rodrigues vector (3 numbers) -> 3x3."""
    a = _numbers(value, where, name, field) if value is not None else None
    if a is not None and a.size == 3:
        return cv2.Rodrigues(_array(a.reshape(3), (3,), where, name, field))[0]
    return _array(value, (3, 3), where, name, field)


def _intrinsic_matrix(value, where: str, name: str, field: str):
    k = _array(value, (3, 3), where, name, field)
    if abs(k[0, 1]) > _SKEW_LIMIT_PX:
        raise CalibrationError(f"{where}: camera {name!r} {field!r} has skew {k[0, 1]:.4g} px;"
                               f" expected 0 (skewed pixels are not modelled)")
    if np.abs(k[2] - [0, 0, 1]).max() > 1e-9 or k[1, 0] != 0:
        raise CalibrationError(f"{where}: camera {name!r} {field!r} is not an intrinsic "
                               f"matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]]")
    return k[0, 0], k[1, 1], k[0, 2], k[1, 2]


def _size(value, where: str, name: str, field: str) -> tuple[int, int]:
    w, h = _array(value, (2,), where, name, field)
    if w != round(w) or h != round(h):
        raise CalibrationError(f"{where}: camera {name!r} {field!r}={[w, h]}: expected whole "
                               f"pixels [width, height]")
    return int(w), int(h)


def _camera(name, k, size, rotation, translation, distortion) -> cameras.Camera:
    fx, fy, cx, cy = k
    return cameras.Camera(str(name), float(fx), float(fy), float(cx), float(cy), int(size[0]),
                          int(size[1]), np.asarray(rotation, np.float64),
                          np.asarray(translation, np.float64).reshape(3),
                          np.asarray(distortion, np.float64))


# ---------------------------------------------------------------------------- json (project)


def _json_object(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CalibrationError(f"{path}: not a readable JSON file ({e})") from None


def _json_flavour(path: str) -> str:
    data = _json_object(path)
    cams = data.get("cameras", data) if isinstance(data, dict) else None
    first = next(iter(cams.values()), None) if isinstance(cams, dict) and cams else None
    if isinstance(first, dict) and "R" in first and "f" in first:
        return "h36m"
    return "json"


def _camera_from_json(name: str, d: dict, where: str) -> cameras.Camera:
    def num(key):
        v = d.get(key)
        if v is None:
            raise CalibrationError(f"{where}: camera {name!r} lacks {key!r}")
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise CalibrationError(f"{where}: camera {name!r} {key}={v!r} is not a "
                                   f"number") from None
        if not np.isfinite(v):
            raise CalibrationError(f"{where}: camera {name!r} {key}={v!r} is not finite")
        return v

    if not isinstance(d, dict):
        raise CalibrationError(f"{where}: camera {name!r} must be an object, got "
                               f"{type(d).__name__}")
    intr = (num("fx"), num("fy"), num("cx"), num("cy"), int(num("width")), int(num("height")))
    distortion = (_array(d["distortion"], (5,), where, name, "distortion")
                  if "distortion" in d else np.zeros(5))
    if "rotation" in d or "translation" in d:
        rotation = _array(d.get("rotation"), (3, 3), where, name, "rotation")
        translation = _array(d.get("translation"), (3,), where, name, "translation")
        return _camera(name, intr[:4], intr[4:], rotation, translation, distortion)
    if "q_cam_to_world" in d or "centre" in d:
        return cameras.Camera.from_quaternion_centre(
            name, intr, _array(d.get("q_cam_to_world"), (4,), where, name, "q_cam_to_world"),
            _array(d.get("centre"), (3,), where, name, "centre"), distortion)
    raise CalibrationError(f"{where}: camera {name!r} needs extrinsics: 'rotation' (3x3, "
                           f"world->camera) and 'translation' (mm), or 'q_cam_to_world' "
                           f"(w, x, y, z) and 'centre' (mm)")


def read_json(path: str) -> tuple[dict, bool]:
    """This project's ``calibration.json`` (format in the module docstring); mm."""
    data = _json_object(path)
    if not isinstance(data, dict) or not isinstance(data.get("cameras"), dict) \
            or not data["cameras"]:
        raise CalibrationError(f"{path}: expected an object {{\"cameras\": {{\"<id>\": "
                               f"{{...}}}}}}")
    return {str(k): _camera_from_json(str(k), v, path)
            for k, v in data["cameras"].items()}, True


# ---------------------------------------------------------------------------- h36m


def read_h36m(path: str) -> tuple[dict, bool]:
    """Human3.6M-style JSON (module docstring); mm."""
    data = _json_object(path)
    cams = data.get("cameras", data) if isinstance(data, dict) else None
    if not isinstance(cams, dict) or not cams:
        raise CalibrationError(f"{path}: expected an object {{\"<camera id>\": {{\"R\", \"t\" "
                               f"or \"T\", \"f\", \"c\", \"k\", \"p\"}}}}")
    out = {}
    for name, d in cams.items():
        name = str(name)
        if not isinstance(d, dict):
            raise CalibrationError(f"{path}: camera {name!r} must be an object")
        for key in ("R", "f", "c"):
            if key not in d:
                raise CalibrationError(f"{path}: camera {name!r} lacks {key!r}")
        if ("t" in d) == ("T" in d):
            raise CalibrationError(f"{path}: camera {name!r} needs exactly one of 't' "
                                   f"(X_cam = R X + t) and 'T' (camera centre)")
        rotation = _array(d["R"], (3, 3), path, name, "R")
        f = _array(d["f"], (2,), path, name, "f")
        c = _array(d["c"], (2,), path, name, "c")
        k = _array(d.get("k", [0, 0, 0]), (3,), path, name, "k")
        p = _array(d.get("p", [0, 0]), (2,), path, name, "p")
        if "width" in d or "height" in d:
            size = _size([d.get("width"), d.get("height")], path, name, "width, height")
        elif name in cameras.H36M_INTRINSICS:
            size = cameras.H36M_INTRINSICS[name][4:]
        else:
            raise CalibrationError(f"{path}: camera {name!r} lacks 'width' and 'height' "
                                   f"(image size in pixels)")
        translation = (_array(d["t"], (3,), path, name, "t") if "t" in d
                       else -rotation @ _array(d["T"], (3,), path, name, "T"))
        out[name] = _camera(name, (f[0], f[1], c[0], c[1]), size, rotation, translation,
                            h36m_calibration.opencv_distortion(k, p))
    return out, True


# ---------------------------------------------------------------------------- qca


def _xml_root(path: str) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise CalibrationError(f"{path}: not a readable XML file ({e})") from None


def _attrs(elem: Optional[ET.Element], keys: Sequence[str], where: str, name: str,
           tag: str) -> list[float]:
    if elem is None:
        raise CalibrationError(f"{where}: camera {name!r} lacks <{tag}>")
    out = []
    for key in keys:
        options = [key] + (["tangentialDistortion" + key[-1]]
                           if key.startswith("tangentalDistortion") else [])
        value = next((elem.get(k) for k in options if elem.get(k) is not None), None)
        if value is None:
            raise CalibrationError(f"{where}: camera {name!r} <{tag}> lacks {key!r}")
        try:
            out.append(float(value))
        except ValueError:
            raise CalibrationError(f"{where}: camera {name!r} <{tag}> {key}={value!r} is not "
                                   f"a number") from None
        if not math.isfinite(out[-1]):
            raise CalibrationError(f"{where}: camera {name!r} <{tag}> {key}={value!r} is not "
                                   f"finite")
    return out


_FOV = ("left", "top", "right", "bottom")


def _subpixel_factor(cam: ET.Element, intrinsic: ET.Element, where: str, name: str) -> float:
    window = cam.find("fov_video_max")
    if window is None:
        window = cam.find("fov_marker_max")
    if window is None or intrinsic.get("sensorMinU") is None:
        log.warning("%s: camera %r: no sensor extent to derive the sub-pixel factor from; "
                    "assuming 64", where, name)
        return 64.0
    left, _, right, _ = _attrs(window, _FOV, where, name, window.tag)
    lo, hi = _attrs(intrinsic, ("sensorMinU", "sensorMaxU"), where, name, "intrinsic")
    if right <= left or hi <= lo:
        raise CalibrationError(f"{where}: camera {name!r} sensor extent sensorMinU..MaxU="
                               f"{lo}..{hi} over <{window.tag}> {left}..{right}: expected "
                               f"increasing bounds")
    factor = round((hi - lo) / (right - left))
    if factor < 1:
        raise CalibrationError(f"{where}: camera {name!r} sensor extent {hi - lo} over "
                               f"{right - left} pixels gives a sub-pixel factor < 1")
    return float(factor)


def read_qca(path: str) -> tuple[dict, bool]:
    """Qualisys QTM calibration export (module docstring); mm."""
    root = _xml_root(path)
    out = {}
    for cam in root.iter("camera"):
        name = cam.get("serial")
        if not name:
            raise CalibrationError(f"{path}: a <camera> lacks its 'serial' (the camera name)")
        if cam.get("active", "1").strip() == "0":
            log.info("%s: camera %s is inactive; left out", path, name)
            continue
        if name in out:
            raise CalibrationError(f"{path}: camera serial {name!r} appears twice")
        intrinsic = cam.find("intrinsic")
        fu, fv, cu, cv_, skew = _attrs(intrinsic, ("focalLengthU", "focalLengthV",
                                                   "centerPointU", "centerPointV", "skew"),
                                       path, name, "intrinsic")
        k1, k2, k3, p1, p2 = _attrs(intrinsic, ("radialDistortion1", "radialDistortion2",
                                                "radialDistortion3", "tangentalDistortion1",
                                                "tangentalDistortion2"), path, name,
                                    "intrinsic")
        factor = _subpixel_factor(cam, intrinsic, path, name)
        left, top, right, bottom = _attrs(cam.find("fov_video"), _FOV, path, name,
                                          "fov_video")
        if abs(skew) / factor > _SKEW_LIMIT_PX:
            raise CalibrationError(f"{path}: camera {name!r} <intrinsic> skew={skew} (= "
                                   f"{skew / factor:.3g} px): expected 0 (skewed pixels are "
                                   f"not modelled)")
        x, y, z, *r = _attrs(cam.find("transform"), ("x", "y", "z", "r11", "r12", "r13",
                                                     "r21", "r22", "r23", "r31", "r32",
                                                     "r33"), path, name, "transform")
        world_to_qtm = np.array(r).reshape(3, 3)
        rotation = np.diag([1.0, -1.0, -1.0]) @ world_to_qtm  # QTM (y up, -z) -> OpenCV
        size = (int(right - left + 1), int(bottom - top + 1))
        out[name] = _camera(name, (fu / factor, fv / factor, cu / factor - left,
                                   cv_ / factor - top), size, rotation,
                            -rotation @ np.array([x, y, z]), (k1, k2, p1, p2, k3))
        if cam.get("viewrotation", "0").strip() not in ("0", ""):
            log.warning("%s: camera %s has viewrotation=%s; the intrinsics are for the "
                        "unrotated sensor image, so the video must not be rotated", path,
                        name, cam.get("viewrotation"))
    return out, True


# ---------------------------------------------------------------------------- toml


def read_toml(path: str) -> tuple[dict, bool]:
    """Anipose / aniposelib / Pose2Sim ``calibration.toml`` (module docstring); free units."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CalibrationError(f"{path}: not a readable TOML file ({e})") from None
    out = {}
    for key, table in data.items():
        if key == "metadata" or not isinstance(table, dict):
            continue
        name = str(table.get("name", key))
        if table.get("fisheye"):
            raise CalibrationError(f"{path}: camera {name!r} fisheye=true: the fisheye lens "
                                   f"model is not supported (expected OpenCV's pinhole model)")
        for field in ("size", "matrix", "rotation", "translation"):
            if field not in table:
                raise CalibrationError(f"{path}: camera {name!r} ([{key}]) lacks {field!r}")
        if name in out:
            raise CalibrationError(f"{path}: camera name {name!r} appears twice")
        out[name] = _camera(name, _intrinsic_matrix(table["matrix"], path, name, "matrix"),
                            _size(table["size"], path, name, "size"),
                            _rotation(table["rotation"], path, name, "rotation"),
                            _array(table["translation"], (3,), path, name, "translation"),
                            _distortion(table.get("distortions"), path, name, "distortions"))
    return out, False


# ---------------------------------------------------------------------------- opencv

_CV_FIELDS = {  # project field -> node names, first found wins
    "K": ("camera_matrix", "cameraMatrix", "K"),
    "dist": ("dist_coeffs", "distCoeffs", "distortion_coefficients", "D"),
    "R": ("R", "rvec", "Rot"),
    "T": ("T", "tvec", "t"),
    "width": ("image_width",),
    "height": ("image_height",),
    "size": ("image_size", "imageSize"),
}
_CV_EASYMOCAP = {"K": ("K",), "dist": ("dist", "D"), "R": ("Rot", "R"), "T": ("T",)}


def _cv_value(node):
    """A FileNode as numbers (matrix, sequence or scalar), a string, or None."""
    if node is None or node.empty() or node.isNone():
        return None
    if node.isString():
        return node.string()
    if node.isInt() or node.isReal():
        return node.real()
    if node.isSeq():
        return [_cv_value(node.at(i)) for i in range(node.size())]
    if node.isMap():
        keys = node.keys()
        if "data" in keys and "rows" in keys:  # !!opencv-matrix, or ROS's untagged layout
            data = np.asarray(_cv_value(node.getNode("data")), np.float64)
            rows, cols = int(node.getNode("rows").real()), int(node.getNode("cols").real())
            return data.reshape(rows, cols) if data.size == rows * cols else data
    return None


def _cv_fields(node, names: Mapping[str, Sequence[str]], suffix: str = "") -> dict:
    keys = set(node.keys())
    out = {}
    for field, options in names.items():
        for option in options:
            if option + suffix in keys:
                out[field] = _cv_value(node.getNode(option + suffix))
                break
    return out


def _cv_records(path: str) -> dict[str, dict]:
    """Camera name -> raw fields of one FileStorage file (layouts in the module docstring)."""
    try:
        fs = cv2.FileStorage(path, cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as e:
        first = str(e.__cause__ or e).strip().splitlines()
        raise CalibrationError(f"{path}: not a readable OpenCV FileStorage file "
                               f"({first[-1] if first else 'parse error'})") from None
    try:
        if not fs.isOpened():
            raise CalibrationError(f"{path}: not a readable OpenCV FileStorage file")
        root = fs.root()
        if not root.isMap():
            raise CalibrationError(f"{path}: expected a map of nodes at the top level")
        shared = _cv_fields(root, {k: _CV_FIELDS[k] for k in ("width", "height", "size")})
        top = _cv_fields(root, {k: v for k, v in _CV_FIELDS.items()
                                if k not in ("width", "height", "size")})
        records = {}
        if top:
            name = next((_cv_value(root.getNode(k)) for k in ("camera_name", "name")
                         if k in root.keys() and root.getNode(k).isString()), None)
            records[name or _stem(path)] = {**shared, **top}
        elif "names" in root.keys():
            names = _cv_value(root.getNode("names")) or []
            for name in names:
                records[str(name)] = {**shared, **_cv_fields(root, _CV_EASYMOCAP, f"_{name}")}
        else:
            for key in root.keys():
                node = root.getNode(key)
                if node.isMap() and "data" not in node.keys():
                    fields = _cv_fields(node, _CV_FIELDS)
                    if fields:
                        records[key] = {**shared, **fields}
        return records
    finally:
        fs.release()


def _stem(path: str) -> str:
    base = os.path.basename(path)
    return base.split(".", 1)[0] if not base.startswith(".") else base


def _cv_camera(name: str, rec: dict, where: str) -> cameras.Camera:
    for field, what in (("K", "camera_matrix (or K)"), ("R", "R (or rvec)"),
                        ("T", "T (or tvec)")):
        if rec.get(field) is None:
            raise CalibrationError(f"{where}: camera {name!r} lacks {what}")
    if rec.get("size") is not None:
        size = _size(rec["size"], where, name, "image_size")
    elif rec.get("width") is not None and rec.get("height") is not None:
        size = _size([rec["width"], rec["height"]], where, name, "image_width, image_height")
    else:
        raise CalibrationError(f"{where}: camera {name!r} lacks image_width and image_height "
                               f"(or image_size)")
    return _camera(name, _intrinsic_matrix(rec["K"], where, name, "camera_matrix"), size,
                   _rotation(rec["R"], where, name, "R"),
                   _array(rec["T"], (3,), where, name, "T"),
                   _distortion(rec.get("dist"), where, name, "dist_coeffs"))


def read_opencv(path: str) -> tuple[dict, bool]:
    """OpenCV FileStorage YAML/XML file, or a folder of them (module docstring); free units."""
    if os.path.isdir(path):
        files = sorted(p for p in glob.glob(os.path.join(path, "*"))
                       if p.lower().endswith(_OPENCV_EXTENSIONS))
        if not files:
            raise CalibrationError(f"{path}: no OpenCV calibration files "
                                   f"({', '.join(_OPENCV_EXTENSIONS)}) in the folder")
    else:
        files = [path]
    records: dict[str, dict] = {}
    for f in files:
        for name, rec in _cv_records(f).items():
            merged = records.setdefault(name, {})
            for field, value in rec.items():
                if value is not None:
                    merged[field] = value
    return {name: _cv_camera(name, rec, path) for name, rec in records.items()}, False


_READERS = {"json": read_json, "qca": read_qca, "toml": read_toml, "opencv": read_opencv,
            "h36m": read_h36m}


# ---------------------------------------------------------------------------- binary


@dataclasses.dataclass(frozen=True)
class CalibrationRun:
    """The converter's flags (checked by the flag engine like every binary's)."""

    input: str = setting(None, "Calibration file (or folder of OpenCV files) to read.",
                         required=True, path=True)
    output: str = setting(None, "calibration.json to write.", required=True, path=True)
    format: str = setting("auto", "Input format; auto detects it from the name and content.",
                          choices=FORMATS)
    units: str = setting("auto", "Translation units of the input; auto: mm for qca/h36m/json, "
                         "and for toml/opencv metres when every camera is within 50 units of "
                         "the origin, else mm.", choices=UNITS)


def main(argv: Sequence[str]) -> None:
    cli.check_no_arguments(argv)
    run = flag_engine.from_flags(CalibrationRun)
    if os.path.isdir(run.output):
        raise cli.UsageError(f"--output={run.output} is a directory; expected a "
                             f"calibration.json file name")
    try:
        cams = load(run.input, run.format, run.units)
    except CalibrationError as e:
        # The input file is what the command line named: a usage error (exit 2).
        raise cli.UsageError(f"--input: {e}") from None
    save_json(run.output, cams)
    print(f"wrote {len(cams)} cameras {sorted(cams)} to {run.output}")


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`CalibrationRun`."""
    flag_engine.define_flags(CalibrationRun, flag_values)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
