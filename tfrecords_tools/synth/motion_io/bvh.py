"""BVH (Biovision hierarchy) reader: joint positions by forward kinematics.

Layout: ``HIERARCHY``, one ``ROOT`` with nested ``JOINT`` and ``End Site`` blocks, each
with an ``OFFSET x y z`` and (except End Sites) ``CHANNELS n name...``; then ``MOTION``,
``Frames: N``, ``Frame Time: dt`` and N lines of channel values in hierarchy order.

Conventions used (those of the common exporters and importers):

* Rotation channels (``Xrotation``/``Yrotation``/``Zrotation``, degrees, any order) give
  the local rotation R = R(first listed) @ R(second) @ R(third).
* Position channels (``Xposition``... on any joint) replace that axis of the joint's
  OFFSET (a root's OFFSET is normally zero; exporters that animate every joint's
  translation write the offset itself as the channel value).
* world rotation G_j = G_parent @ R_j; position p_j = p_parent + G_parent @ t_j.
* An End Site is a point named ``<parent>_End`` (e.g. ``Head_End``).

Units are not declared by BVH (cm, inches or metres are common): the importer infers
them from the body's size unless ``--motion_units`` is given. Y is up by convention.
"""
from __future__ import annotations

import numpy as np

from tfrecords_tools.synth.motion_io.source import RawMotion, euler_matrix, fail

_AXES = {"xrotation": "x", "yrotation": "y", "zrotation": "z",
         "xposition": "x", "yposition": "y", "zposition": "z"}


def _tokens(lines, start, stop):
    for n in range(start, stop):
        for tok in lines[n].split():
            yield tok, n + 1


def read(path: str) -> RawMotion:
    """Reads a BVH file into world joint positions (file units, Y up).

    Raises:
      MotionFileError: a broken hierarchy, a bad channel, an unparsable number (with its
        line), or fewer frames than declared.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise fail(path, f"cannot be read ({e.strerror})") from None
    motion_at = next((i for i, l in enumerate(lines) if l.strip().upper() == "MOTION"), None)
    if motion_at is None:
        raise fail(path, "broken hierarchy: no MOTION line (not a BVH file?)")
    names, parents, offsets, channels = [], [], [], []
    stack, pending, closed_root = [], None, False
    toks = _tokens(lines, 0, motion_at)

    def number(what):
        tok, n = next(toks, (None, motion_at))
        try:
            return float(tok)
        except (TypeError, ValueError):
            raise fail(path, f"unparsable number {tok!r} for {what} at line {n}") from None

    first = next(toks, (None, 1))
    if first[0] is None or first[0].upper() != "HIERARCHY":
        raise fail(path, f"broken hierarchy: expected HIERARCHY at line {first[1]}")
    for tok, n in toks:
        key = tok.upper()
        if key in ("ROOT", "JOINT", "END"):
            if key == "ROOT" and (names or stack):
                raise fail(path, f"broken hierarchy: a second ROOT at line {n}")
            if key != "ROOT" and not stack:
                raise fail(path, f"broken hierarchy: {tok} outside the ROOT block at line {n}")
            label, _ = next(toks, ("", n))
            if key == "END":
                label = f"{names[stack[-1]]}_End"
            pending = (label, stack[-1] if stack else -1, key == "END")
        elif tok == "{":
            if pending is None or closed_root:
                raise fail(path, f"broken hierarchy: unexpected '{{' at line {n}")
            names.append(pending[0])
            parents.append(pending[1])
            offsets.append(None)
            channels.append([])
            stack.append(len(names) - 1)
            pending = None
        elif tok == "}":
            if not stack:
                raise fail(path, f"broken hierarchy: unbalanced '}}' at line {n}")
            j = stack.pop()
            if offsets[j] is None:
                raise fail(path, f"broken hierarchy: joint {names[j]} has no OFFSET")
            closed_root = not stack
        elif key == "OFFSET":
            if not stack:
                raise fail(path, f"broken hierarchy: OFFSET outside a joint at line {n}")
            offsets[stack[-1]] = [number("OFFSET") for _ in range(3)]
        elif key == "CHANNELS":
            if not stack:
                raise fail(path, f"broken hierarchy: CHANNELS outside a joint at line {n}")
            count = number("CHANNELS")
            chans = [next(toks, ("", n))[0] for _ in range(int(count))]
            bad = [c for c in chans if c.lower() not in _AXES]
            if bad or count != int(count):
                raise fail(path, f"bad CHANNELS {chans} at line {n}; expected X/Y/Z position "
                                 f"and rotation channels")
            channels[stack[-1]] = [c.lower() for c in chans]
        else:
            raise fail(path, f"broken hierarchy: unexpected {tok!r} at line {n}")
    if stack or not names:
        raise fail(path, "broken hierarchy: unbalanced braces (a joint block is not closed)"
                   if stack else "broken hierarchy: no ROOT")

    # ---- MOTION
    header, row = {}, motion_at + 1
    while row < len(lines) and len(header) < 2:
        text = lines[row].strip()
        row += 1
        if not text:
            continue
        key, _, value = text.partition(":")
        key = key.strip().lower()
        if key not in ("frames", "frame time"):
            raise fail(path, f"expected 'Frames:' and 'Frame Time:' at line {row}")
        try:
            header[key] = float(value)
        except ValueError:
            raise fail(path, f"unparsable number {value.strip()!r} at line {row}") from None
    if len(header) < 2 or header["frame time"] <= 0 or header["frames"] < 1:
        raise fail(path, "MOTION needs 'Frames: N' (N >= 1) and 'Frame Time: dt' (dt > 0)")
    count = int(header["frames"])
    width = sum(len(c) for c in channels)
    values = np.zeros((count, width))
    t = 0
    for n in range(row, len(lines)):
        text = lines[n].split()
        if not text:
            continue
        if t >= count:
            break
        try:
            vals = [float(v) for v in text]
        except ValueError:
            bad = next(v for v in text if not _is_float(v))
            raise fail(path, f"unparsable number {bad!r} at line {n + 1}") from None
        if len(vals) != width:
            raise fail(path, f"{len(vals)} values at line {n + 1}, expected {width} (the "
                             f"hierarchy's channel count)")
        values[t] = vals
        t += 1
    if t < count:
        raise fail(path, f"declares {count} frames but holds {t}")
    return RawMotion(path=path, names=tuple(names),
                     points=_forward_kinematics(parents, offsets, channels, values),
                     fps=1.0 / header["frame time"], mm_per_unit=None, up_axis="y",
                     format="bvh")


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _forward_kinematics(parents, offsets, channels, values) -> np.ndarray:
    count = len(values)
    pos = np.zeros((count, len(parents), 3))
    glob = [None] * len(parents)
    col = 0
    for j, par in enumerate(parents):
        t = np.tile(np.asarray(offsets[j], np.float64), (count, 1))
        rot_axes, rot_cols = "", []
        for c in channels[j]:
            if c.endswith("position"):
                t[:, "xyz".index(_AXES[c])] = values[:, col]
            else:
                rot_axes += _AXES[c]
                rot_cols.append(col)
            col += 1
        local = (euler_matrix(rot_axes, np.radians(values[:, rot_cols])) if rot_axes
                 else np.broadcast_to(np.eye(3), (count, 3, 3)))
        if par < 0:
            pos[:, j] = t
            glob[j] = local
        else:
            pos[:, j] = pos[:, par] + np.einsum("tij,tj->ti", glob[par], t)
            glob[j] = glob[par] @ local
    return pos
