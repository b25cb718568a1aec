"""Skeleton conventions -> the 17 Human3.6M joints: the mapping tables and their evaluation.

A table maps each Human3.6M joint (:data:`tfrecords_tools.skeleton.JOINT_NAMES`) to a
*spec* over the file's point names (matched case-insensitively, ignoring a namespace
prefix such as ``mixamorig:``):

* ``"Name"`` - that point;
* ``[spec, spec, ...]`` - the mean of the specs (a midpoint, a marker cluster's centre);
* ``{"from": spec, "to": spec, "t": 1.5}`` - ``from + t * (to - from)``: a point on the
  line through two others (the top of the head beyond the neck-head line);
* ``{"first": [spec, ...]}`` - the first spec whose points all exist.

Derived joints only need the right *direction* from their parent: retargeting
(:mod:`.retarget`) keeps each bone's direction and sets its length from the subject's
body, so an extended head point's exact distance does not matter.

The built-in tables are tried in order; the first whose specs all resolve is used. A
user table (``--motion_mapping``, a JSON object of the same specs keyed by the 17 joint
names) replaces them.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional

import numpy as np

from tfrecords_tools import skeleton
from tfrecords_tools.synth.motion_io.source import RawMotion, fail


# BVH joint positions are the joints' origins (the start of each bone). CMU-named rigs
# (Hips, LeftUpLeg, LeftLeg, LeftFoot, Spine, Spine1, Neck, Head, LeftArm, LeftForeArm,
# LeftHand ...) and Mixamo's (mixamorig:Hips, Spine, Spine1, Spine2, Neck, Head,
# HeadTop_End, LeftArm ...) share the names used here (CMU's own release: the next
# table). The head top is Mixamo's HeadTop_End joint, else the Head's End Site, else the
# Neck->Head line extended by its own length.
BVH_CMU_MIXAMO = {
    "Hip": "Hips", "RHip": "RightUpLeg", "RKnee": "RightLeg", "RFoot": "RightFoot",
    "LHip": "LeftUpLeg", "LKnee": "LeftLeg", "LFoot": "LeftFoot",
    "Spine": {"first": ["Spine1", ["Hips", "Neck"]]}, "Thorax": "Neck", "Neck/Nose": "Head",
    "Head": {"first": ["HeadTop_End", "Head_End", {"from": "Neck", "to": "Head", "t": 2.0}]},
    "LShoulder": "LeftArm", "LElbow": "LeftForeArm", "LWrist": "LeftHand",
    "RShoulder": "RightArm", "RElbow": "RightForeArm", "RWrist": "RightHand",
}

# CMU's own BVH release (cgspeed's conversion of the ASF/AMC takes: Hips, LHipJoint,
# LowerBack, Spine, Spine1, Neck, Neck1, Head ...) puts Neck at Spine1's end (zero offset),
# so the shared table above would give a zero-length spine-thorax bone. Its spine point is
# halfway up the back (LowerBack sits on the hips, Spine1 at the base of the neck); the
# LowerBack joint, which only this rig has, makes it the table picked for such files.
BVH_CMU = dict(BVH_CMU_MIXAMO, Spine={"from": "LowerBack", "to": "Spine1", "t": 0.5})

# CMU ASF/AMC: a bone's position is its END (the root: the root position), so the femur's
# end is the knee, the tibia's the ankle, the clavicle's the shoulder, the humerus' the
# elbow and the radius' the wrist; thorax ends at the base of the neck, upperneck at the
# skull, head at the top of the head.
ASF_CMU = {
    "Hip": "root", "RHip": "rhipjoint", "RKnee": "rfemur", "RFoot": "rtibia",
    "LHip": "lhipjoint", "LKnee": "lfemur", "LFoot": "ltibia",
    "Spine": "upperback", "Thorax": "thorax", "Neck/Nose": "upperneck", "Head": "head",
    "LShoulder": "lclavicle", "LElbow": "lhumerus", "LWrist": "lradius",
    "RShoulder": "rclavicle", "RElbow": "rhumerus", "RWrist": "rradius",
}

# SMPL / SMPL-H / SMPL-X body joints (AMASS joint arrays; the first 22 are the body).
SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand")
SMPL = {
    "Hip": "pelvis", "RHip": "right_hip", "RKnee": "right_knee", "RFoot": "right_ankle",
    "LHip": "left_hip", "LKnee": "left_knee", "LFoot": "left_ankle",
    "Spine": "spine2", "Thorax": "neck", "Neck/Nose": "head",
    "Head": {"from": "neck", "to": "head", "t": 2.0},
    "LShoulder": "left_shoulder", "LElbow": "left_elbow", "LWrist": "left_wrist",
    "RShoulder": "right_shoulder", "RElbow": "right_elbow", "RWrist": "right_wrist",
}

# Vicon Plug-in Gait output in a C3D: joint centres (xHJC hip, xKJC knee, xAJC ankle,
# xSJC shoulder, xEJC elbow, xWJC wrist), falling back to the segment origins Plug-in
# Gait places at the distal joint (xFEO femur = knee, xTIO tibia = ankle, xCLO clavicle =
# shoulder, xHUO humerus = elbow, xRAO radius = wrist). Pelvis = mean of the hip centres;
# thorax = mean of C7 and CLAV (else TRXO, else the shoulder centres' midpoint); spine =
# mean of T10 and STRN (else midway between pelvis and thorax); Neck/Nose = mean of the
# four head markers (else HEDO); head top = the thorax->head line extended by half.
_PIG_HEAD = {"first": [["LFHD", "RFHD", "LBHD", "RBHD"], "HEDO"]}
_PIG_THORAX = {"first": [["C7", "CLAV"], "TRXO", ["LSJC", "RSJC"]]}


def _pig_side(s: str) -> dict:
    side = "L" if s == "L" else "R"
    return {f"{side}Hip": f"{side}HJC",
            f"{side}Knee": {"first": [f"{side}KJC", f"{side}FEO"]},
            f"{side}Foot": {"first": [f"{side}AJC", f"{side}TIO"]},
            f"{side}Shoulder": {"first": [f"{side}SJC", f"{side}CLO"]},
            f"{side}Elbow": {"first": [f"{side}EJC", f"{side}HUO"]},
            f"{side}Wrist": {"first": [f"{side}WJC", f"{side}RAO"]}}


PLUG_IN_GAIT = {
    "Hip": ["LHJC", "RHJC"], **_pig_side("L"), **_pig_side("R"),
    "Spine": {"first": [["T10", "STRN"], [["LHJC", "RHJC"], _PIG_THORAX]]},
    "Thorax": _PIG_THORAX, "Neck/Nose": _PIG_HEAD,
    "Head": {"from": _PIG_THORAX, "to": _PIG_HEAD, "t": 1.5},
}

# DeepMimic's humanoid (pybullet_data clips; points from :mod:`.deepmimic`'s forward
# kinematics): the chest joint sits midway up the back (H36M Spine), the neck joint at
# shoulder height (Thorax); the head's sphere centre stands for Neck/Nose, its top for Head.
DEEPMIMIC = {
    "Hip": "root", "RHip": "right_hip", "RKnee": "right_knee", "RFoot": "right_ankle",
    "LHip": "left_hip", "LKnee": "left_knee", "LFoot": "left_ankle",
    "Spine": "chest", "Thorax": "neck", "Neck/Nose": "head", "Head": "head_top",
    "LShoulder": "left_shoulder", "LElbow": "left_elbow", "LWrist": "left_wrist",
    "RShoulder": "right_shoulder", "RElbow": "right_elbow", "RWrist": "right_wrist",
}

# Reallusion Character Creator / iClone rigs (``CC_Base_`` joints, e.g. the CMU takes
# exported through iClone): the spine's upper joint (Spine02) sits midway between pelvis
# and neck (H36M Spine), the first neck-twist joint at the base of the neck (Thorax), the
# Head joint at the skull's base (Neck/Nose, as the CMU table's Head); the head top is
# the Head's End Site where the rig has one, else the neck->head line extended by its own
# length (only its direction is kept).
CHARACTER_CREATOR = {
    "Hip": "CC_Base_Hip", "RHip": "CC_Base_R_Thigh", "RKnee": "CC_Base_R_Calf",
    "RFoot": "CC_Base_R_Foot", "LHip": "CC_Base_L_Thigh", "LKnee": "CC_Base_L_Calf",
    "LFoot": "CC_Base_L_Foot", "Spine": "CC_Base_Spine02", "Thorax": "CC_Base_NeckTwist01",
    "Neck/Nose": "CC_Base_Head",
    "Head": {"first": ["CC_Base_Head_End",
                       {"from": "CC_Base_NeckTwist01", "to": "CC_Base_Head", "t": 2.0}]},
    "LShoulder": "CC_Base_L_Upperarm", "LElbow": "CC_Base_L_Forearm",
    "LWrist": "CC_Base_L_Hand", "RShoulder": "CC_Base_R_Upperarm",
    "RElbow": "CC_Base_R_Forearm", "RWrist": "CC_Base_R_Hand",
}

# Daz-friendly BVH conversions of the CMU takes (B. Hahne / cgspeed: hip, abdomen, chest,
# neck, head, rCollar, rShldr, rForeArm, rHand, rButtock, rThigh, rShin, rFoot ...): the
# hip root sits a little below the hip joints, so the pelvis is the thighs' midpoint; the
# chest joint (about halfway up from pelvis to neck) is H36M Spine, the neck joint the
# Thorax, the head joint the skull's base (Neck/Nose); the head top is the Head's End Site
# where the rig has one (the Daz rig has eye joints there instead), else the neck->head
# line extended by its own length (only its direction is kept).
BVH_DAZ = {
    "Hip": ["rThigh", "lThigh"], "RHip": "rThigh", "RKnee": "rShin", "RFoot": "rFoot",
    "LHip": "lThigh", "LKnee": "lShin", "LFoot": "lFoot", "Spine": "chest",
    "Thorax": "neck", "Neck/Nose": "head",
    "Head": {"first": ["head_End", {"from": "neck", "to": "head", "t": 2.0}]},
    "LShoulder": "lShldr", "LElbow": "lForeArm", "LWrist": "lHand",
    "RShoulder": "rShldr", "RElbow": "rForeArm", "RWrist": "rHand",
}

# The generator's own names (a table for files that already use them).
H36M_NAMES = {name: name for name in skeleton.JOINT_NAMES}

TABLES: Dict[str, dict] = {
    "bvh-cmu": BVH_CMU, "bvh-cmu-mixamo": BVH_CMU_MIXAMO, "asf-cmu": ASF_CMU, "smpl": SMPL,
    "plug-in-gait": PLUG_IN_GAIT, "deepmimic": DEEPMIMIC,
    "character-creator": CHARACTER_CREATOR, "bvh-daz": BVH_DAZ, "h36m": H36M_NAMES,
}


def norm_name(name: str) -> str:
    """Matching key of a point name: lower case, namespace (``x:``) and spaces removed."""
    return name.rsplit(":", 1)[-1].strip().lower()


def _names_of(spec: Any) -> list:
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, list):
        return [n for s in spec for n in _names_of(s)]
    if isinstance(spec, dict) and "first" in spec:
        return _names_of(spec["first"][0]) if spec["first"] else []
    if isinstance(spec, dict):
        return _names_of(spec.get("from")) + _names_of(spec.get("to"))
    raise TypeError(spec)


def _resolve(spec: Any, index: Dict[str, int]) -> Optional[Any]:
    """``spec`` with every ``first`` decided, or None when a point is missing."""
    if isinstance(spec, str):
        return spec if norm_name(spec) in index else None
    if isinstance(spec, list):
        parts = [_resolve(s, index) for s in spec]
        return None if not parts or any(p is None for p in parts) else parts
    if "first" in spec:
        for option in spec["first"]:
            got = _resolve(option, index)
            if got is not None:
                return got
        return None
    a, b = _resolve(spec["from"], index), _resolve(spec["to"], index)
    return None if a is None or b is None else {"from": a, "to": b, "t": float(spec["t"])}


def _evaluate(spec: Any, points: np.ndarray, index: Dict[str, int]) -> np.ndarray:
    if isinstance(spec, str):
        return points[:, index[norm_name(spec)]]
    if isinstance(spec, list):
        return np.mean([_evaluate(s, points, index) for s in spec], axis=0)
    a, b = _evaluate(spec["from"], points, index), _evaluate(spec["to"], points, index)
    return a + spec["t"] * (b - a)


def check_table(table: Any, where: str) -> dict:
    """Validates a table's layout (17 joint keys; specs of the forms above)."""
    def ok(spec):
        if isinstance(spec, str):
            return bool(spec)
        if isinstance(spec, list):
            return bool(spec) and all(ok(s) for s in spec)
        if isinstance(spec, dict) and set(spec) == {"first"}:
            return isinstance(spec["first"], list) and bool(spec["first"]) and \
                all(ok(s) for s in spec["first"])
        if isinstance(spec, dict) and set(spec) in ({"from", "to", "t"}, {"from", "to"}):
            return ok(spec["from"]) and ok(spec["to"]) and \
                isinstance(spec.get("t", 1.0), (int, float))
        return False

    if not isinstance(table, dict):
        raise ValueError(f"{where}: expected a JSON object joint -> marker spec")
    missing = [j for j in skeleton.JOINT_NAMES if j not in table]
    extra = [k for k in table if k not in skeleton.JOINT_NAMES]
    if missing or extra:
        raise ValueError(f"{where}: keys must be the 17 joints {list(skeleton.JOINT_NAMES)}; "
                         f"missing {missing}, unknown {extra}")
    bad = [j for j in skeleton.JOINT_NAMES if not ok(table[j])]
    if bad:
        raise ValueError(f"{where}: bad spec for {bad}; expected a name, a list of specs "
                         f"(mean), {{'from', 'to', 't'}} or {{'first': [...]}}")
    return {j: ({**table[j], "t": table[j].get("t", 1.0)}
                if isinstance(table[j], dict) and "from" in table[j] else table[j])
            for j in skeleton.JOINT_NAMES}


def load_table(path: str) -> dict:
    """A user mapping table from a JSON file (see the module docstring).

    Raises:
      ValueError: naming the flag and file and what is wrong.
    """
    where = f"--motion_mapping {path}"
    try:
        with open(path) as f:
            table = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{where}: not a readable JSON file ({e})") from None
    return check_table(table, where)


def to_h36m(raw: RawMotion, table: Optional[dict] = None) -> tuple:
    """Maps ``raw`` to the 17 Human3.6M joints.

    Returns:
      (joints [T, 17, 3] in the file's units and axes, the name of the table used
      (``"user"`` for ``table``), the table's specs with every ``first`` decided).

    Raises:
      MotionFileError: no table fits the file's point names (naming what is missing).
    """
    index = {}
    for i, n in enumerate(raw.names):
        index.setdefault(norm_name(n), i)
    candidates = {"user": table} if table is not None else TABLES
    best = None
    for name, tab in candidates.items():
        resolved = {j: _resolve(tab[j], index) for j in skeleton.JOINT_NAMES}
        missing = sorted({n for j, r in resolved.items() if r is None
                          for n in _names_of(tab[j]) if norm_name(n) not in index})
        if not missing:
            joints = np.stack([_evaluate(resolved[j], raw.points, index)
                               for j in skeleton.JOINT_NAMES], axis=1)
            return joints, name, resolved
        if best is None or len(missing) < len(best[1]):
            best = (name, missing)
    shown = ", ".join(raw.names[:12]) + (", ..." if len(raw.names) > 12 else "")
    which = ("the --motion_mapping table" if table is not None
             else f"no mapping table fits (closest: {best[0]})")
    raise fail(raw.path, f"unknown or missing joints: {which} needs {', '.join(best[1][:8])}"
                         f"{' ...' if len(best[1]) > 8 else ''}; the file has {shown}; pass "
                         f"--motion_mapping=JSON (joint -> point name or list to average)")
