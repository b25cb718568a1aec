"""Acclaim ASF (skeleton) + AMC (motion) reader: bone end positions by forward kinematics.

ASF sections used: ``:units`` (``length L``, ``angle deg|rad``), ``:root`` (``order`` of
the root's AMC values, e.g. ``TX TY TZ RX RY RZ``; ``axis`` rotation order, e.g. ``XYZ``;
``position``; ``orientation``), ``:bonedata`` (``begin ... end`` blocks with ``name``,
``direction`` (unit vector in the global rest frame), ``length``, ``axis ax ay az ORDER``
(the bone's local frame), ``dof rx ry rz`` (any subset and order), ``limits`` (ignored))
and ``:hierarchy`` (lines ``parent child child ...``). AMC: header lines (``#``, ``:``),
then per frame its number alone on a line and one line per bone: name and dof values.

Forward kinematics (the Acclaim convention, as in the CMU viewers): with
C = Euler(axis angles, ORDER) and L = Euler(dof values, dof order), an order ``XYZ``
meaning the X rotation is applied first (R = Rz @ Ry @ Rx):

* root: M = C_root @ L_root @ C_root^T, position from the AMC translation + ``position``;
* bone: M = M_parent @ C @ L @ C^T; end = start + length * M @ direction, start = the
  parent's end (the root's position for bones attached to the root).

A point per bone is its END (``lfemur`` is the knee), plus ``root``.

Units: ``length L`` follows the CMU convention: lengths (and root translations) divided by
L are inches (L = 0.45 in CMU's files), i.e. 25.4 / L mm per unit. Y is up. AMC stores no
frame rate: 120 fps (CMU's capture rate) unless ``--motion_fps`` says otherwise.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from tfrecords_tools.synth.motion_io.source import RawMotion, euler_matrix, fail

DEFAULT_FPS = 120.0
_DOFS = ("rx", "ry", "rz")


def _floats(path, parts, n_line, what):
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise fail(path, f"unparsable number in {what} at line {n_line}") from None


def _order(path, text, n_line):
    axes = text.lower()
    if sorted(axes) != ["x", "y", "z"]:
        raise fail(path, f"bad rotation order {text!r} at line {n_line}; expected e.g. XYZ")
    return axes


def read_asf(path: str) -> dict:
    """Parses an ASF skeleton: dict with ``bones`` (name -> dict), ``children``, ``root``
    settings, ``mm_per_unit`` and ``degrees``.

    Raises:
      MotionFileError: unparsable numbers (with the line), a bone without direction or
        length, or a broken hierarchy.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise fail(path, f"cannot be read ({e.strerror})") from None
    section, bone = None, None
    bones, children, linked = {}, {}, set()
    root = {"order": ["tx", "ty", "tz", "rx", "ry", "rz"], "axis": "xyz",
            "position": [0.0] * 3, "orientation": [0.0] * 3}
    length_unit, degrees = 1.0, True
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        key = parts[0].lower()
        if key.startswith(":"):
            section = key  # :version, :name, :documentation are not needed
            continue
        if section == ":units":
            if key == "length":
                length_unit = _floats(path, parts[1:2], n, "length")[0]
            elif key == "angle":
                degrees = parts[1].lower().startswith("deg")
        elif section == ":root":
            if key == "order":
                root["order"] = [p.lower() for p in parts[1:]]
            elif key == "axis":
                root["axis"] = _order(path, parts[1], n)
            elif key in ("position", "orientation"):
                root[key] = _floats(path, parts[1:4], n, key)
        elif section == ":bonedata":
            if key == "begin":
                bone = {"axis": [0.0] * 3, "axis_order": "xyz", "dof": []}
            elif key == "end":
                if bone is None or "name" not in bone:
                    raise fail(path, f"broken hierarchy: bone block without a name ending at "
                                     f"line {n}")
                for need in ("direction", "length"):
                    if need not in bone:
                        raise fail(path, f"bone {bone['name']} has no {need}")
                bones[bone["name"]] = bone
                bone = None
            elif bone is not None:
                if key == "name":
                    bone["name"] = parts[1]
                elif key == "direction":
                    bone["direction"] = _floats(path, parts[1:4], n, "direction")
                elif key == "length":
                    bone["length"] = _floats(path, parts[1:2], n, "length")[0]
                elif key == "axis":
                    bone["axis"] = _floats(path, parts[1:4], n, "axis")
                    bone["axis_order"] = _order(path, parts[4] if len(parts) > 4 else "XYZ", n)
                elif key == "dof":
                    dof = [p.lower() for p in parts[1:]]
                    bad = [d for d in dof if d not in _DOFS]
                    if bad:
                        raise fail(path, f"dof {bad} of bone {bone.get('name')} at line {n} not "
                                         f"supported; expected rotations rx ry rz")
                    bone["dof"] = dof
        elif section == ":hierarchy":
            if key in ("begin", "end"):
                continue
            parent = parts[0]
            for child in parts[1:]:
                if child in linked:
                    raise fail(path, f"broken hierarchy: bone {child} has two parents "
                                     f"(line {n})")
                linked.add(child)
                children.setdefault(parent, []).append(child)
    if not bones:
        raise fail(path, "no :bonedata bones (not an ASF skeleton?)")
    known = set(bones) | {"root"}
    unknown = sorted(({p for p in children} | linked) - known)
    if unknown:
        raise fail(path, f"broken hierarchy: unknown bone(s) {unknown} in :hierarchy")
    # Every bone must hang from the root (no cycles, no orphans).
    reach, todo = set(), ["root"]
    while todo:
        b = todo.pop()
        for c in children.get(b, []):
            if c not in reach:
                reach.add(c)
                todo.append(c)
    orphans = sorted(set(bones) - reach)
    if orphans:
        raise fail(path, f"broken hierarchy: bone(s) {orphans[:6]} not connected to the root")
    if length_unit <= 0:
        raise fail(path, f":units length {length_unit} must be > 0")
    return {"bones": bones, "children": children, "root": root, "degrees": degrees,
            "mm_per_unit": 25.4 / length_unit}


def find_skeleton(amc_path: str) -> Optional[str]:
    """The ASF an AMC file uses: ``<stem>.asf``, else ``<prefix before _>.asf`` (CMU's
    ``01_02.amc`` -> ``01.asf``), else the only .asf in its folder; None if none fits."""
    folder, stem = os.path.split(os.path.splitext(amc_path)[0])
    for name in (stem, stem.split("_")[0]):
        for ext in (".asf", ".ASF"):
            p = os.path.join(folder, name + ext)
            if os.path.exists(p):
                return p
    asfs = [f for f in os.listdir(folder or ".") if f.lower().endswith(".asf")]
    return os.path.join(folder, asfs[0]) if len(asfs) == 1 else None


def read(amc_path: str, asf_path: Optional[str] = None, fps: Optional[float] = None
         ) -> RawMotion:
    """Reads an AMC motion with its ASF skeleton (found by :func:`find_skeleton`)."""
    asf_path = asf_path or find_skeleton(amc_path)
    if asf_path is None:
        raise fail(amc_path, "no ASF skeleton found: expected <name>.asf, <subject>.asf "
                             "(01_02.amc -> 01.asf) or a single .asf in the same folder")
    skel = read_asf(asf_path)
    bones, degrees = skel["bones"], skel["degrees"]
    try:
        with open(amc_path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise fail(amc_path, f"cannot be read ({e.strerror})") from None
    frames, current = [], None
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0].startswith(":"):
            if parts[0].upper() == ":RADIANS":
                degrees = False
            elif parts[0].upper() == ":DEGREES":
                degrees = True
            continue
        if len(parts) == 1:
            if not parts[0].isdigit():
                raise fail(amc_path, f"unparsable frame number {parts[0]!r} at line {n}")
            current = {}
            frames.append(current)
            continue
        if current is None:
            raise fail(amc_path, f"bone values before the first frame number at line {n}")
        name = parts[0]
        want = len(skel["root"]["order"]) if name == "root" else \
            len(bones[name]["dof"]) if name in bones else None
        if want is None:
            raise fail(amc_path, f"unknown bone {name!r} at line {n} (not in {asf_path})")
        vals = _floats(amc_path, parts[1:], n, name)
        if len(vals) != want:
            raise fail(amc_path, f"bone {name} has {len(vals)} values at line {n}, expected "
                                 f"{want}")
        current[name] = vals
    if not frames:
        raise fail(amc_path, "no frames")
    names = ["root"] + list(bones)
    values = {b: np.zeros((len(frames), len(skel["root"]["order"]) if b == "root"
                           else len(bones[b]["dof"]))) for b in names}
    for t, fr in enumerate(frames):
        for b, v in fr.items():
            values[b][t] = v
    missing = [b for b in ["root"] + [b for b in bones if bones[b]["dof"]]
               if any(b not in fr for fr in frames)]
    if missing:
        raise fail(amc_path, f"bone(s) {missing[:5]} missing in some frames")
    pos = _forward_kinematics(skel, values, degrees)
    return RawMotion(path=amc_path, names=tuple(names), points=np.stack(
        [pos[b] for b in names], axis=1), fps=fps or DEFAULT_FPS,
        mm_per_unit=skel["mm_per_unit"], up_axis="y", format="asf/amc")


def _forward_kinematics(skel: dict, values: dict, degrees: bool) -> dict:
    unit = np.radians if degrees else (lambda a: np.asarray(a, np.float64))
    root = skel["root"]
    count = len(values["root"])
    c_root = euler_matrix(root["axis"][::-1], unit(np.asarray(root["orientation"])[::-1]))
    order = root["order"]
    trans = np.tile(np.asarray(root["position"], np.float64), (count, 1))
    rot_axes, rot_cols = "", []
    for k, ch in enumerate(order):
        if ch.startswith("t"):
            trans[:, "xyz".index(ch[1])] += values["root"][:, k]
        else:
            rot_axes += ch[1]
            rot_cols.append(k)
    local = euler_matrix(rot_axes[::-1], unit(values["root"][:, rot_cols[::-1]])) \
        if rot_axes else np.eye(3)
    mats = {"root": c_root @ local @ c_root.T}
    pos = {"root": trans}
    todo = ["root"]
    while todo:
        parent = todo.pop()
        for b in skel["children"].get(parent, []):
            bone = skel["bones"][b]
            c = euler_matrix(bone["axis_order"][::-1], unit(np.asarray(bone["axis"])[::-1]))
            dof = bone["dof"]
            if dof:
                axes = "".join(d[1] for d in dof)
                lmat = euler_matrix(axes[::-1], unit(values[b][:, ::-1]))
            else:
                lmat = np.eye(3)
            mats[b] = mats[parent] @ c @ lmat @ c.T
            d = np.asarray(bone["direction"], np.float64)
            norm = np.linalg.norm(d)
            d = d / norm if norm > 0 else d
            pos[b] = pos[parent] + bone["length"] * np.einsum("...ij,j->...i", mats[b], d)
            pos[b] = np.broadcast_to(pos[b], (count, 3))
            todo.append(b)
    return pos
