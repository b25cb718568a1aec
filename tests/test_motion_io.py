"""Motion-capture import: per-format round trips through known skeletons (BVH, ASF/AMC,
C3D, AMASS npz) to within 1 mm, mapping tables, bad files (one line each), resampling,
retargeting, floor, treadmill, windows, and the synthesize flags.

Every fixture is written here, from a procedural take of a known subject.
"""
import dataclasses
import json
import os
import struct

import numpy as np
import pytest

from tfrecords_tools import dataset_io, skeleton, synthesize
from tfrecords_tools.runtime import cli
from tfrecords_tools.synth import body, motion, motion_io
from tfrecords_tools.synth.motion_io import mapping, retarget
from tfrecords_tools.synth.motion_io.source import euler_matrix

S1 = body.make_subject("S1")


def _take(frames=40, action="Walking", seed=0):
    """A known 17-joint take: world mm, Z up, 50 fps, S1's rigid bones."""
    return motion.generate_motion(S1, action, frames, np.random.default_rng(seed))


def _world_to_yup(p):
    """Inverse of the importer's Y-up -> Z-up turn: world (x, y, z) -> file (x, z, -y)."""
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], -1)


# ----------------------------------------------------------------------------- rotations

def _euler_angles(order, rot):
    """Angles [..., 3] (radians) with euler_matrix(order, angles) == rot (Tait-Bryan)."""
    i, j, k = ("xyz".index(a) for a in order)
    e = 1.0 if (i, j, k) in ((0, 1, 2), (1, 2, 0), (2, 0, 1)) else -1.0
    b = np.arcsin(np.clip(e * rot[..., i, k], -1, 1))
    a = np.arctan2(-e * rot[..., j, k], rot[..., k, k])
    c = np.arctan2(-e * rot[..., i, j], rot[..., i, i])
    return np.stack([a, b, c], -1)


def _align(rest, cur):
    """Rotations [T, 3, 3] taking rest vectors [C, 3] onto current ones [T, C, 3]
    (Kabsch; one vector: the smallest rotation)."""
    if len(rest) == 1:
        u = rest[0] / np.linalg.norm(rest[0])
        v = cur[:, 0] / np.linalg.norm(cur[:, 0], axis=-1, keepdims=True)
        axis = np.cross(u, v)
        s = np.linalg.norm(axis, axis=-1)
        c = v @ u
        k = axis / np.maximum(s, 1e-12)[:, None]
        kx = np.zeros((len(v), 3, 3))
        kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
        kx -= np.transpose(kx, (0, 2, 1))
        ang = np.arctan2(s, c)[:, None, None]
        return np.eye(3) + np.sin(ang) * kx + (1 - np.cos(ang)) * kx @ kx
    h = np.einsum("ci,tcj->tij", rest, cur)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.transpose(vt, (0, 2, 1)) @ np.transpose(u, (0, 2, 1))))
    fix = np.broadcast_to(np.eye(3), h.shape).copy()
    fix[:, 2, 2] = d
    return np.transpose(vt, (0, 2, 1)) @ fix @ np.transpose(u, (0, 2, 1))


def test_euler_decomposition_inverts_euler_matrix():
    rng = np.random.default_rng(0)
    for order in ("xyz", "zxy", "zyx", "yxz", "yzx", "xzy"):
        ang = rng.uniform(-1.2, 1.2, (20, 3))
        rot = euler_matrix(order, ang)
        np.testing.assert_allclose(euler_matrix(order, _euler_angles(order, rot)), rot,
                                   atol=1e-12)


# ----------------------------------------------------------------------------- writers

_CHILDREN = {j: [c for c, p in enumerate(skeleton.PARENTS) if p == j]
             for j in range(skeleton.NUM_JOINTS)}
# Human3.6M joint -> BVH joint name of the CMU/Mixamo table (10 is the Head's End Site).
_BVH_NAMES = {0: "Hips", 1: "RightUpLeg", 2: "RightLeg", 3: "RightFoot", 4: "LeftUpLeg",
              5: "LeftLeg", 6: "LeftFoot", 7: "Spine1", 8: "Neck", 9: "Head",
              11: "LeftArm", 12: "LeftForeArm", 13: "LeftHand", 14: "RightArm",
              15: "RightForeArm", 16: "RightHand"}


def write_bvh(path, joints, order="zxy", scale=0.1, fps=50.0, names=None, position_joint=11,
              rest_seed=1):
    """BVH of a rigid 17-joint take (file: Y up, ``scale`` units per mm), rotation channels
    in ``order`` on every joint, position channels on the root and on ``position_joint``.

    Each joint's world rotation is solved from its children (Kabsch), against rest
    offsets turned by a random rotation per joint so that no angle is trivially zero.
    """
    names = names or _BVH_NAMES
    p = _world_to_yup(np.asarray(joints, np.float64)) * scale
    count = len(p)
    rng = np.random.default_rng(rest_seed)
    rest_turn = {j: euler_matrix("xyz", rng.uniform(-0.6, 0.6, 3)) for j in _CHILDREN}
    offsets, glob = {}, {}
    for j in range(skeleton.NUM_JOINTS):
        kids = _CHILDREN[j]
        if not kids:
            continue
        rest = np.stack([rest_turn[j] @ (p[0, c] - p[0, j]) for c in kids])
        cur = np.stack([p[:, c] - p[:, j] for c in kids], 1)
        glob[j] = _align(rest, cur)
        for c, o in zip(kids, rest):
            offsets[c] = o
    channels = {"x": "Xrotation", "y": "Yrotation", "z": "Zrotation"}
    rot_names = " ".join(channels[a] for a in order)
    lines = ["HIERARCHY"]
    columns = []

    def block(j, depth):
        pad = "  " * depth
        kind = "ROOT" if j == 0 else "JOINT"
        off = np.zeros(3) if j == 0 else offsets[j]
        lines.extend([f"{pad}{kind} {names[j]}", f"{pad}{{",
                      f"{pad}  OFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}"])
        par = skeleton.PARENTS[j]
        g = glob.get(j, glob.get(par))
        local = g if par < 0 else np.transpose(glob[par], (0, 2, 1)) @ g
        ang = np.degrees(_euler_angles(order, local))
        if j in (0, position_joint):
            pos = p[:, 0] if j == 0 else np.tile(off, (count, 1))
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {rot_names}")
            columns.append(pos)
        else:
            lines.append(f"{pad}  CHANNELS 3 {rot_names}")
        columns.append(ang)
        for c in _CHILDREN[j]:
            if c == 10:  # the head top: the Head joint's End Site
                o = offsets[10]
                lines.extend([f"{pad}  End Site", f"{pad}  {{",
                              f"{pad}    OFFSET {o[0]:.6f} {o[1]:.6f} {o[2]:.6f}", f"{pad}  }}"])
            else:
                block(c, depth + 1)
        lines.append(f"{pad}}}")

    block(0, 0)
    values = np.concatenate(columns, 1)
    lines += ["MOTION", f"Frames: {count}", f"Frame Time: {1.0 / fps:.10f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in values]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


_ASF_NAMES = {j: mapping.ASF_CMU[n] for j, n in enumerate(skeleton.JOINT_NAMES) if j}


def write_asf_amc(folder, stem, joints, length_unit=0.45, seed=2):
    """ASF skeleton (CMU-style names, ``length 0.45`` units, Y up, random bone axes) and
    AMC motion reproducing a rigid 17-joint take; returns the AMC path."""
    mm_to_unit = length_unit / 25.4
    p = _world_to_yup(np.asarray(joints, np.float64)) * mm_to_unit
    rng = np.random.default_rng(seed)
    root_rot = np.radians(np.stack([np.full(len(p), 5.0), np.linspace(-30, 60, len(p)),
                                    np.full(len(p), -8.0)], -1))
    mats = {0: euler_matrix("zyx", root_rot[:, ::-1])}
    asf = [":version 1.10", ":name test", ":units", f"  mass 1.0", f"  length {length_unit}",
           "  angle deg", ":documentation", "  written by tests/test_motion_io.py", ":root",
           "   order TX TY TZ RX RY RZ", "   axis XYZ", "   position 0 0 0",
           "   orientation 0 0 0", ":bonedata"]
    frames = {"root": np.concatenate([p[:, 0], np.degrees(root_rot)], 1)}
    for j in range(1, skeleton.NUM_JOINTS):
        par = skeleton.PARENTS[j]
        rest = p[0, j] - p[0, par]
        length = float(np.linalg.norm(rest))
        direction = euler_matrix("xyz", rng.uniform(-0.5, 0.5, 3)) @ (rest / length)
        axis = rng.uniform(-40, 40, 3)
        c = euler_matrix("zyx", np.radians(axis[::-1]))
        mats[j] = _align(direction[None], (p[:, j] - p[:, par])[:, None])
        local = c.T @ np.transpose(mats[par], (0, 2, 1)) @ mats[j] @ c
        zyx = np.degrees(_euler_angles("zyx", local))  # R = Rz Ry Rx: dof rx ry rz
        frames[_ASF_NAMES[j]] = zyx[:, ::-1]
        asf += ["  begin", f"     id {j}", f"     name {_ASF_NAMES[j]}",
                "     direction " + " ".join(f"{v:.9f}" for v in direction),
                f"     length {length:.9f}",
                "     axis " + " ".join(f"{v:.6f}" for v in axis) + " XYZ",
                "    dof rx ry rz", "    limits (-180.0 180.0)", "           (-180.0 180.0)",
                "           (-180.0 180.0)", "  end"]
    asf += [":hierarchy", "  begin"]
    asf += [f"    {'root' if j == 0 else _ASF_NAMES[j]} "
            + " ".join(_ASF_NAMES[c] for c in _CHILDREN[j]) for j in _CHILDREN if _CHILDREN[j]]
    asf += ["  end"]
    with open(os.path.join(folder, f"{stem.split('_')[0]}.asf"), "w") as f:
        f.write("\n".join(asf) + "\n")
    amc = ["#!OML:ASF written by tests", ":FULLY-SPECIFIED", ":DEGREES"]
    for t in range(len(p)):
        amc.append(str(t + 1))
        amc += [f"{name} " + " ".join(f"{v:.9f}" for v in vals[t]) for name, vals in frames.items()]
    path = os.path.join(folder, f"{stem}.amc")
    with open(path, "w") as f:
        f.write("\n".join(amc) + "\n")
    return path


def write_c3d(path, labels, points, rate=100.0, scale=-1.0, endian="<", analog=2,
              units="mm"):
    """C3D with ``points`` [T, P, 3] (NaN = invalid), float storage for ``scale`` < 0 else
    int16 scaled by ``scale``; Intel (``<``), MIPS (``>``) or DEC (``"dec"``) processor;
    ``analog`` zero analog values after each frame."""
    count, n = points.shape[:2]
    floats = scale < 0
    params = []
    dec = endian == "dec"
    endian = "<" if dec else endian

    def f32(values):
        """float32 bytes; DEC (VAX F): 4x the value's IEEE bits, 16-bit halves swapped."""
        values = np.asarray(values, np.float64).ravel()
        if not dec:
            return values.astype(endian + "f4").tobytes()
        bits = (values * 4).astype("<f4").view("<u4")
        return (((bits & 0xFFFF) << 16) | (bits >> 16)).astype("<u4").tobytes()

    def group(gid, name):
        params.append(struct.pack("bb", len(name), -gid) + name.encode() +
                      struct.pack(endian + "h", 3) + b"\x00")

    def param(gid, name, kind, dims, payload):
        rec = struct.pack("bb", len(name), gid) + name.encode()
        body_ = struct.pack("bB", kind, len(dims)) + bytes(dims) + payload + b"\x00"
        params.append((rec, body_))

    width = max(len(s) for s in labels)
    group(1, "POINT")
    param(1, "USED", 2, (), struct.pack(endian + "h", n))
    param(1, "SCALE", 4, (), f32(scale))
    param(1, "RATE", 4, (), f32(rate))
    param(1, "UNITS", -1, (len(units),), units.encode())
    param(1, "LABELS", -1, (width, n), b"".join(s.ljust(width).encode() for s in labels))
    section = b""
    for k, item in enumerate(params):
        if isinstance(item, bytes):
            section += item
            continue
        rec, body_ = item
        offset = 0 if k == len(params) - 1 else 2 + len(body_)
        section += rec + struct.pack(endian + "h", offset) + body_
    blocks = (4 + len(section)) // 512 + 1
    processor = 85 if dec else 86 if endian == ">" else 84
    param_bytes = (bytes([1, 0x50, blocks, processor]) + section).ljust(
        512 * blocks, b"\x00")
    data_block = 2 + blocks
    header = bytearray(512)
    header[0], header[1] = 2, 0x50
    struct.pack_into(endian + "HHHHH", header, 2, n, analog, 1, count, 10)
    header[12:16] = f32(scale)
    struct.pack_into(endian + "HH", header, 16, data_block, 1 if analog else 0)
    header[20:24] = f32(rate)
    valid = np.isfinite(points).all(-1)
    frame = np.zeros((count, n, 4))
    frame[..., :3] = np.where(valid[..., None], points, 0.0)
    frame[..., 3] = np.where(valid, 0.0, -1.0)
    if floats:
        body_ = np.concatenate([frame.reshape(count, -1), np.zeros((count, analog))], 1)
        data = f32(body_)
    else:
        frame[..., :3] = np.round(frame[..., :3] / scale)
        body_ = np.concatenate([frame.reshape(count, -1), np.zeros((count, analog))], 1)
        data = body_.astype(endian + "i2").tobytes()
    with open(path, "wb") as f:
        f.write(bytes(header) + param_bytes + data)
    return path


def _pig_markers(joints):
    """Plug-in Gait labels and points [T, P, 3] whose table values are the take's 16
    joints below the head (joint centres, and pairs averaging to spine/thorax/head)."""
    j = joints
    side = np.array([0.0, 60.0, 0.0])
    names, pts = [], []
    for s, (hip, knee, ankle, sh, el, wr) in (("L", (4, 5, 6, 11, 12, 13)),
                                              ("R", (1, 2, 3, 14, 15, 16))):
        for label, k in (("HJC", hip), ("KJC", knee), ("AJC", ankle), ("SJC", sh),
                         ("EJC", el), ("WJC", wr)):
            names.append(s + label)
            pts.append(j[:, k])
    for a, b, k in (("C7", "CLAV", 8), ("T10", "STRN", 7)):
        names += [a, b]
        pts += [j[:, k] + side, j[:, k] - side]
    for label, off in (("LFHD", (30, 40, 0)), ("RFHD", (30, -40, 0)), ("LBHD", (-30, 40, 0)),
                       ("RBHD", (-30, -40, 0))):
        names.append(label)
        pts.append(j[:, 9] + off)
    names.append("STRAY")
    pts.append(j[:, 0] * 0 + 5000.0)
    return names, np.stack(pts, 1)


# ----------------------------------------------------------------------------- round trips

def _source(path, **kw):
    return motion_io.load_source(path, motion_io.ImportOptions(**kw))


@pytest.mark.parametrize("order", ["zxy", "xyz", "yzx"])
def test_bvh_round_trip_within_1mm(tmp_path, order):
    j = _take()
    src = _source(write_bvh(str(tmp_path / "walk.bvh"), j, order=order))
    assert src.table == "bvh-cmu-mixamo"
    assert np.abs(src.joints - j).max() < 1.0  # written in cm (0.1 units per mm), Y up


def test_bvh_character_creator_rig_round_trip_within_1mm(tmp_path):
    # iClone / Character Creator joint names (the committed CMU takes' export).
    j = _take()
    cc = {0: "CC_Base_Hip", 1: "CC_Base_R_Thigh", 2: "CC_Base_R_Calf", 3: "CC_Base_R_Foot",
          4: "CC_Base_L_Thigh", 5: "CC_Base_L_Calf", 6: "CC_Base_L_Foot", 7: "CC_Base_Spine02",
          8: "CC_Base_NeckTwist01", 9: "CC_Base_Head", 11: "CC_Base_L_Upperarm",
          12: "CC_Base_L_Forearm", 13: "CC_Base_L_Hand", 14: "CC_Base_R_Upperarm",
          15: "CC_Base_R_Forearm", 16: "CC_Base_R_Hand"}
    src = _source(write_bvh(str(tmp_path / "cc.bvh"), j, order="zyx", names=cc))
    assert src.table == "character-creator"
    assert np.abs(src.joints - j).max() < 1.0
    # Without the Head's End Site (real rigs carry face bones there) the head top lies on
    # the neck->head line, one neck-head length beyond the head.
    raw = motion_io.read_raw(str(tmp_path / "cc.bvh"))
    names = tuple("CC_Base_FacialBone" if n == "CC_Base_Head_End" else n for n in raw.names)
    joints, table, _ = mapping.to_h36m(dataclasses.replace(raw, names=names))
    assert table == "character-creator"
    np.testing.assert_allclose(joints[:, 10], 2 * joints[:, 9] - joints[:, 8])


def test_bvh_daz_rig_round_trip_within_1mm(tmp_path):
    # Daz-friendly joint names (the cgspeed conversion of the CMU takes); the pelvis is the
    # thighs' midpoint, as the Daz hip root sits below the hip joints.
    j = _take()
    daz = {0: "hip", 1: "rThigh", 2: "rShin", 3: "rFoot", 4: "lThigh", 5: "lShin",
           6: "lFoot", 7: "chest", 8: "neck", 9: "head", 11: "lShldr", 12: "lForeArm",
           13: "lHand", 14: "rShldr", 15: "rForeArm", 16: "rHand"}
    src = _source(write_bvh(str(tmp_path / "daz.bvh"), j, order="zyx", names=daz))
    assert src.table == "bvh-daz"
    expected = j.copy()
    expected[:, 0] = (j[:, 1] + j[:, 4]) / 2
    assert np.abs(src.joints - expected).max() < 1.0


def test_bvh_units_given_and_mixamo_prefix(tmp_path):
    j = _take()
    names = {k: f"mixamorig:{v}" for k, v in _BVH_NAMES.items()}
    path = write_bvh(str(tmp_path / "m.bvh"), j, order="xyz", scale=1 / 25.4, names=names)
    assert np.abs(_source(path).joints - j).max() < 1.0  # inches, inferred
    assert np.abs(_source(path, units="in").joints - j).max() < 1.0


def _cmu_rig_bvh(path, bend_deg):
    """CMU's own BVH rig (cgspeed's release): zero-offset LHipJoint/LowerBack/Neck joints
    (Neck sits at Spine1's end), lengths in CMU units; frame 0 at rest, frame 1 with the
    lower back turned ``bend_deg`` about X."""
    def joint(name, off, kids=(), end=None):
        body_ = " ".join(kids) + (f" End Site {{ OFFSET {end} }}" if end else "")
        return f"JOINT {name} {{ OFFSET {off} CHANNELS 3 Zrotation Yrotation Xrotation {body_} }}"
    leg = lambda s, x: joint(f"{s}HipJoint", "0 0 0", [joint(
        f"{'Left' if s == 'L' else 'Right'}UpLeg", f"{x} -1.8 0", [joint(
            f"{'Left' if s == 'L' else 'Right'}Leg", "0 -7.4 0", [joint(
                f"{'Left' if s == 'L' else 'Right'}Foot", "0 -7.5 0", end="0 0 2")])])])
    arm = lambda s, x: joint(f"{s}Shoulder", "0 0 0", [joint(f"{s}Arm", f"{x} 1.3 0", [joint(
        f"{s}ForeArm", f"{x * 5 / 3} 0 0", [joint(f"{s}Hand", f"{x} 0 0", end="1 0 0")])])])
    back = joint("LowerBack", "0 0 0", [joint("Spine", "0 2 0", [joint("Spine1", "0 2 0", [
        joint("Neck", "0 0 0", [joint("Neck1", "0 1.8 0", [joint("Head", "0 1.8 0",
                                                                 end="0 1.8 0")])]),
        arm("Left", 3.0), arm("Right", -3.0)])])])
    zero = [0.0] * (6 + 3 * 22)
    bent = list(zero)
    bent[6 + 3 * 8 + 2] = bend_deg  # LowerBack's Xrotation: joints in file order
    rows = [[0.0, 17.0, 0.0] + zero[3:], [0.0, 17.0, 0.0] + bent[3:]]
    text = ("HIERARCHY ROOT Hips { OFFSET 0 0 0 CHANNELS 6 Xposition Yposition Zposition "
            f"Zrotation Yrotation Xrotation {leg('L', 1.5)} {leg('R', -1.5)} {back} }}\n"
            "MOTION\nFrames: 2\nFrame Time: 0.1\n"
            + "\n".join(" ".join(f"{v:g}" for v in r) for r in rows) + "\n")
    with open(path, "w") as f:
        f.write(text)
    return path


def test_bvh_cmu_rig_and_cmu_units(tmp_path):
    path = _cmu_rig_bvh(str(tmp_path / "64_26.bvh"), 90.0)
    with pytest.raises(motion_io.MotionFileError):  # 1/0.45 inch is never inferred
        _source(path)
    src = _source(path, units="cmu")
    assert src.table == "bvh-cmu"
    u = 25.4 / 0.45
    j = src.joints[[0, -1]]  # 10 fps resampled to 50: the first and last frames as given
    hip, spine, thorax, knee, ankle = j[:, 0], j[:, 7], j[:, 8], j[:, 5], j[:, 6]
    assert np.allclose(np.linalg.norm(thorax - hip, axis=-1), 4 * u, atol=1.0)
    assert np.allclose(spine, (hip + thorax) / 2, atol=1.0)  # halfway up the back
    assert np.allclose(np.linalg.norm(ankle - knee, axis=-1), 7.5 * u, atol=1.0)
    assert abs(thorax[0, 2] - hip[0, 2] - 4 * u) < 1.0  # upright at rest
    assert abs(thorax[1, 2] - hip[1, 2]) < 1.0  # bent 90 degrees: the back horizontal


def test_asf_amc_round_trip_within_1mm(tmp_path):
    j = _take()
    amc = write_asf_amc(str(tmp_path), "07_03", j)
    src = _source(amc, fps=50.0)  # AMC stores no rate (default 120)
    assert src.table == "asf-cmu"
    assert np.abs(src.joints - j).max() < 1.0
    assert len(_source(amc).joints) == int(np.floor((len(j) - 1) / 120 * 50)) + 1


@pytest.mark.parametrize("scale, endian", [(-1.0, "<"), (0.05, "<"), (0.05, ">"),
                                           (-1.0, "dec"), (-1.0, ">")])
def test_c3d_plug_in_gait_round_trip_float_and_int16(tmp_path, scale, endian):
    j = _take()
    names, pts = _pig_markers(j)
    path = write_c3d(str(tmp_path / "gait.c3d"), names, pts / 1000.0 if scale < 0 else pts,
                     rate=50.0, scale=scale, endian=endian, units="m" if scale < 0 else "mm")
    raw = motion_io.read_raw(path)
    assert raw.names[-1] == "STRAY" and raw.fps == 50.0
    src = _source(path)
    assert src.table == "plug-in-gait"
    # Pelvis: the hip centres' midpoint (the generator's pelvis sits 15 mm above it).
    np.testing.assert_allclose(src.joints[:, 0], (j[:, 1] + j[:, 4]) / 2, atol=1.0)
    assert np.abs(src.joints[:, 1:10] - j[:, 1:10]).max() < 1.0
    assert np.abs(src.joints[:, 11:] - j[:, 11:]).max() < 1.0
    # Head top: on the thorax -> head-centre line, beyond the head centre.
    up = src.joints[:, 10] - src.joints[:, 9]
    assert (np.einsum("ti,ti->t", up, j[:, 9] - j[:, 8]) > 0).all()


def test_c3d_user_mapping_gaps_and_edges(tmp_path):
    """A marker mapping from JSON (names, averages); a 3-frame gap interpolated, leading
    frames with a missing marker trimmed, a long gap refused naming the joint."""
    j = _take(60)
    labels = [f"M{k}" for k in range(17)] + ["HIPA", "HIPB"]
    pts = np.concatenate([j, (j[:, :1] + [0, 50, 0]), (j[:, :1] - [0, 50, 0])], 1)
    table = {n: f"M{k}" for k, n in enumerate(skeleton.JOINT_NAMES)}
    table["Hip"] = ["HIPA", "HIPB"]
    mp = str(tmp_path / "map.json")
    with open(mp, "w") as f:
        json.dump(table, f)
    pts[20:23, 5] = np.nan   # 60 ms gap: interpolated
    pts[:4, 12] = np.nan     # leading gap: trimmed
    path = write_c3d(str(tmp_path / "m.c3d"), labels, pts, rate=50.0, scale=-1.0)
    src = _source(path, mapping=mp)
    assert src.table == "user" and len(src.joints) == len(j) - 4
    assert np.abs(src.joints - j[4:]).max() < 15.0  # the interpolated knee
    assert np.abs(np.delete(src.joints, 5, 1) - np.delete(j[4:], 5, 1)).max() < 1.0
    pts[30:45, 2] = np.nan   # 300 ms > 100 ms
    write_c3d(path, labels, pts, rate=50.0, scale=-1.0)
    with pytest.raises(motion_io.MotionFileError) as e:
        _source(path, mapping=mp)
    assert _one_line(e, path) and "NaN or inf in frames [30" in str(e.value)
    assert "RKnee" in str(e.value) and "--motion_max_gap_ms" in str(e.value)
    assert len(_source(path, mapping=mp, max_gap_ms=400).joints) == len(j) - 4
    table["LWrist"] = ["NOPE", "M13"]
    with open(mp, "w") as f:
        json.dump(table, f)
    _bad(path, r"unknown or missing joints: the --motion_mapping table needs NOPE; the file "
               r"has M0, M1", mapping=mp)


def test_npz_writer_stores_an_imported_take_that_reads_back_and_retargets(tmp_path):
    from tfrecords_tools.synth.motion_io import npz
    j = _take()
    path = str(tmp_path / "clip.npz")
    npz.write(path, j, skeleton.JOINT_NAMES, 50.0)
    src = _source(path)
    assert src.table == "h36m" and not src.as_given  # retargeted like any imported file
    assert np.abs(src.joints - j).max() < 0.1  # float32 metres
    assert not [f for f in os.listdir(tmp_path) if "tmp" in f]
    with pytest.raises(ValueError, match=r"expected \[T, 17, 3\]"):
        npz.write(path, j[:, :5], skeleton.JOINT_NAMES, 50.0)


@pytest.mark.parametrize("count", [22, 24, 52])
def test_amass_npz_round_trip(tmp_path, count):
    j = _take()
    smpl = np.zeros((len(j), count, 3))
    idx = {n: k for k, n in enumerate(mapping.SMPL_JOINT_NAMES)}
    for k, name in enumerate(skeleton.JOINT_NAMES):
        spec = mapping.SMPL[name]
        if isinstance(spec, str):
            smpl[:, idx[spec]] = j[:, k]
    path = str(tmp_path / "amass_poses.npz")
    np.savez(path, joints=smpl / 1000.0, mocap_framerate=np.array(50.0))
    src = _source(path)
    assert src.table == "smpl"
    assert np.abs(np.delete(src.joints, 10, 1) - np.delete(j, 10, 1)).max() < 1e-6
    np.testing.assert_allclose(src.joints[:, 10] - j[:, 9], j[:, 9] - j[:, 8], atol=1e-6)


def test_npz_with_joint_names_and_missing_rate(tmp_path):
    j = _take()
    path = str(tmp_path / "named.npz")
    np.savez(path, joints=j / 1000.0, joint_names=np.array(skeleton.JOINT_NAMES))
    with pytest.raises(motion_io.MotionFileError, match="stores no frame rate; pass --motion_fps"):
        _source(path)
    assert np.abs(_source(path, fps=50).joints - j).max() < 1e-6


def test_retargeted_round_trip_to_the_same_subject_within_1mm(tmp_path):
    """BVH -> S1's own bones: the take comes back (centred; feet already on the floor)."""
    j = _take()
    src = _source(write_bvh(str(tmp_path / "w.bvh"), j))
    take, = motion_io.subject_takes(src, S1.body)
    want = j - np.concatenate([j[:, 0, :2].mean(0), [0.0]])
    assert np.abs(take - want).max() < 1.0


def test_retarget_keeps_directions_and_sets_lengths():
    j = _take()
    s9 = body.make_subject("S9").body
    lengths = retarget.subject_bone_lengths(s9)
    out = retarget.retarget(j, lengths, root_scale=1.0)
    np.testing.assert_allclose(retarget.bone_lengths(out), np.tile(lengths, (len(j), 1)),
                               atol=1e-9)
    for p, c in skeleton.BONES:
        a, b = j[:, c] - j[:, p], out[:, c] - out[:, p]
        cos = np.einsum("ti,ti->t", a, b) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        assert cos.min() > 1 - 1e-9
    np.testing.assert_allclose(out[:, 0], j[:, 0])
    # S1's own lengths reproduce S1's take.
    np.testing.assert_allclose(retarget.retarget(j, retarget.subject_bone_lengths(S1.body)), j,
                               atol=1e-6)


def test_resample_120fps_sine_to_50fps():
    t = np.arange(240) / 120.0
    x = np.zeros((240, 17, 3))
    x[..., 2] = (100 * np.sin(2 * np.pi * t))[:, None]
    y = retarget.resample(x, 120.0, 50.0)
    t50 = np.arange(100) / 50.0
    assert y.shape == (100, 17, 3)  # the last 120 fps frame is at 1.992 s
    np.testing.assert_allclose(y[:, 3, 2], 100 * np.sin(2 * np.pi * t50), atol=0.05)


def test_floor_treadmill_and_windows(tmp_path):
    j = _take(300)
    j_up = j + [400.0, -300.0, 250.0]  # a lab origin elsewhere, floor 25 cm low
    path = str(tmp_path / "walk.npz")
    np.savez(path, joints=j_up / 1000.0, joint_names=np.array(skeleton.JOINT_NAMES),
             mocap_framerate=50)
    src = _source(path)
    s9 = body.make_subject("S9").body
    take, = motion_io.subject_takes(src, s9, motion_io.ImportOptions())
    assert abs(take[:, [3, 6], 2].min() - retarget.ANKLE_HEIGHT * s9.height) < 1e-6
    np.testing.assert_allclose(take[:, 0, :2].mean(0), 0, atol=1e-6)
    opts = motion_io.ImportOptions(treadmill=True, window=120)
    takes = motion_io.subject_takes(src, s9, opts)
    assert [len(t) for t in takes] == [120, 120, 60]  # a half window left over: kept
    for t in takes:
        np.testing.assert_allclose(t[:, 0, :2], 0, atol=1e-9)
    # Heading kept: the hip line turns as in the capture.
    whole = motion_io.subject_takes(src, s9, motion_io.ImportOptions(treadmill=True))[0]
    a, b = whole[:, 4, :2] - whole[:, 1, :2], j[:, 4, :2] - j[:, 1, :2]
    np.testing.assert_allclose(np.arctan2(a[:, 1], a[:, 0]), np.arctan2(b[:, 1], b[:, 0]),
                               atol=1e-9)
    assert retarget.windows(300, 120) == [(0, 120), (120, 240), (240, 300)]
    assert retarget.windows(290, 120) == [(0, 120), (120, 240)]
    assert retarget.windows(100, 120) == [(0, 100)]


def test_mapping_tables_cover_every_joint():
    for name, table in mapping.TABLES.items():
        assert mapping.check_table(table, name)


# ----------------------------------------------------------------------------- bad files

def _one_line(excinfo, path):
    text = str(excinfo.value)
    assert "\n" not in text and text.startswith(f"motion file {path}: "), text
    return True


def _bad(path, match, named=None, **kw):
    with pytest.raises(motion_io.MotionFileError, match=match) as e:
        _source(path, **kw)
    assert _one_line(e, named or path)


def test_bad_bvh_files(tmp_path):
    j = _take(10)
    good = write_bvh(str(tmp_path / "good.bvh"), j)
    text = open(good).read()
    cases = {
        "unknown": (text.replace("LeftUpLeg", "Thigh_L").replace("LeftLeg", "Shin_L"),
                    r"unknown or missing joints: no mapping table fits \(closest: "
                    r"bvh-cmu-mixamo\) needs LeftLeg, LeftUpLeg; the file has Hips"),
        "broken": (text.replace("}\nMOTION", "\nMOTION", 1),
                   r"broken hierarchy: unbalanced braces"),
        "second_root": (text.replace("JOINT LeftUpLeg", "ROOT LeftUpLeg"),
                        "broken hierarchy: a second ROOT at line"),
    }
    lines = text.splitlines()
    row = lines.index("MOTION") + 5
    lines[row] = lines[row].replace(lines[row].split()[3], "1.2.3", 1)
    cases["number"] = ("\n".join(lines), rf"unparsable number '1.2.3' at line {row + 1}")
    short = text.splitlines()
    cases["frames"] = ("\n".join(short[:-2]), "declares 10 frames but holds 8")
    # LeftLeg at the same place as LeftUpLeg: the thigh has no length.
    i = next(k for k, l in enumerate(lines) if l.strip() == "JOINT LeftLeg")
    zeroed = list(text.splitlines())
    zeroed[i + 2] = zeroed[i + 2].split("OFFSET")[0] + "OFFSET 0 0 0"
    cases["zero"] = ("\n".join(zeroed), r"zero-length bone LHip-LKnee in frames \[0, 1")
    for name, (content, match) in cases.items():
        path = str(tmp_path / f"{name}.bvh")
        with open(path, "w") as f:
            f.write(content)
        _bad(path, match)


def test_bad_asf_amc_files(tmp_path):
    amc = write_asf_amc(str(tmp_path), "01_01", _take(5))
    asf = str(tmp_path / "01.asf")
    text = open(asf).read()
    with open(asf, "w") as f:
        f.write(text.replace("    thorax upperneck", "    thorax upperneck skull"))
    _bad(amc, r"broken hierarchy: unknown bone\(s\) \['skull'\]", named=asf)
    with open(asf, "w") as f:
        f.write(text.replace("    lfemur ltibia\n", ""))
    _bad(amc, r"broken hierarchy: bone\(s\) \['ltibia'\] not connected to the root",
         named=asf)
    with open(asf, "w") as f:
        f.write(text)
    lines = open(amc).read().splitlines()
    k = next(i for i, l in enumerate(lines) if l.startswith("lfemur"))
    lines[k] = "lfemur 1 x 3"
    with open(amc, "w") as f:
        f.write("\n".join(lines))
    _bad(amc, rf"unparsable number in lfemur at line {k + 1}")
    os.remove(asf)
    _bad(amc, "no ASF skeleton found")


def test_bad_c3d_files(tmp_path):
    path = str(tmp_path / "x.c3d")
    with open(path, "wb") as f:
        f.write(b"\x02\x10" + bytes(1000))
    _bad(path, r"not a C3D file")
    j = _take(20)
    write_c3d(path, [f"A{k}" for k in range(17)], j)
    _bad(path, r"unknown or missing joints: no mapping table fits")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:-100])
    _bad(path, r"truncated data: the header declares 20 frames")


def test_bad_npz_and_extension(tmp_path):
    path = str(tmp_path / "m.npz")
    np.savez(path, joints=np.zeros((5, 10, 3)), mocap_framerate=60)
    _bad(path, r"'joints' has 10 joints and no 'joint_names'")
    other = str(tmp_path / "m.fbx")
    open(other, "w").close()
    _bad(other, r"unknown extension '.fbx'")


def test_bad_mapping_json(tmp_path):
    mp = str(tmp_path / "map.json")
    with open(mp, "w") as f:
        json.dump({"Hip": "X"}, f)
    with pytest.raises(ValueError, match=r"--motion_mapping .*missing \['RHip'"):
        mapping.load_table(mp)


# ----------------------------------------------------------------------------- synthesize

def _small(**kw):
    base = dict(subjects=("S1", "S9"), takes=1, image_size=32, clip_length=16, seed=3,
                min_motion_mm=0.0)
    base.update(kw)
    return synthesize.SynthConfig(**base)


def test_synthesize_motion_dir_windows_and_retargeting(tmp_path):
    folder = tmp_path / "mocap"
    folder.mkdir()
    walk = _take(64)
    write_bvh(str(folder / "Walk_01.bvh"), walk, scale=0.1)
    write_asf_amc(str(folder), "05_02", _take(40, "Boxing"))
    (folder / "notes.txt").write_text("not a motion")
    out = str(tmp_path / "out")
    cfg = _small(subjects=("S9",), motion_dir=str(folder), motion_window=32, motion_fps=50.0)
    manifest = synthesize.generate(out, cfg, log=lambda s: None)
    assert set(manifest["images_per"]["action"]) == {"Walk01", "0502"}
    assert set(manifest["settings"]["motion_files_sha256"]) == {"Walk_01.bvh", "05_02.amc",
                                                                "05.asf"}
    import tensorflow as tf
    from tfrecords_tools import schema
    seqs = {}
    for path in dataset_io.shard_paths(out):
        for rec in tf.data.TFRecordDataset(path):
            c = schema.decode_clip(rec.numpy())
            seqs.setdefault(c.sequence_id, []).append(c.joints3d_world)
    # 64 frames -> 2 windows of 32; 40 -> 1 window of 32 (the 8 left are dropped).
    assert sorted(seqs) == ["S9/0502 1", "S9/Walk01 1", "S9/Walk01 2"]
    s9 = np.concatenate(seqs["S9/Walk01 1"])
    np.testing.assert_allclose(np.median(retarget.bone_lengths(s9), 0),
                               retarget.subject_bone_lengths(body.make_subject("S9", 3).body),
                               atol=1e-3)


def test_synthesize_binary_refuses_a_bad_motion_file_in_one_line(tmp_path):
    folder = tmp_path / "mocap"
    folder.mkdir()
    bad = folder / "broken.bvh"
    bad.write_text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\nMOTION\nFrames: 1\nFrame Time: 0.02\n")
    out = str(tmp_path / "out")
    code, _, err = cli.invoke("tfrecords_tools.synthesize", [
        f"--output_dir={out}", f"--motion_dir={folder}", "--subjects=S1", "--image_size=32",
        "--treadmill", "--motion_window=64"])
    assert code == cli.DATA_EXIT, err
    assert err.strip().count("\n") == 0 and f"motion file {bad}: broken hierarchy" in err
    assert not os.path.exists(out)
    code, _, err = cli.invoke("tfrecords_tools.synthesize", [
        f"--output_dir={out}", f"--motion_dir={folder}", "--motion_file=x.npz"])
    assert code == cli.USAGE_EXIT and "exclusive" in err
