"""Synthetic subjects: body proportions and appearance, deterministic per (name, seed).

A :class:`Subject` holds a :class:`BodyShape` (bone lengths and limb radii in mm,
used by :mod:`~tfrecords_tools.synth.motion` and :mod:`~tfrecords_tools.synth.render`)
and a :class:`Look` (RGB colours and the asymmetric cues that make left and right
distinguishable, as they are on real people: a bag strap over one shoulder, a watch
on one wrist, a stripe down one trouser leg, and a face on the front of the head).
"""
from __future__ import annotations

import dataclasses
import re
import zlib

import numpy as np

# Human3.6M subject names: S1, S5, S6, S7, S8 train, S9, S11 test.
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
KNOWN_SUBJECTS = TRAIN_SUBJECTS + TEST_SUBJECTS
# Extra synthetic people U01..U99, U100..U999, for more unlabelled pre-training subjects
# than Human3.6M's five (the pretext task then has to generalise across more bodies and
# looks). Names keep two digits below 100, so datasets made with the old 99-person limit
# keep their names.
MAX_EXTRA_SUBJECTS = 999
_EXTRA_NAME = re.compile(r"U(\d{2,3})")


def extra_subject_name(i: int) -> str:
    """Name of the ``i``-th extra person (1-based): U01 ... U99, U100 ... U999."""
    return f"U{i:02d}"


def extra_subjects(n: int) -> tuple:
    """The first ``n`` extra synthetic people: ``("U01", ..., extra_subject_name(n))``."""
    if not 0 <= n <= MAX_EXTRA_SUBJECTS:
        raise ValueError(f"extra subjects: {n} must lie in [0, {MAX_EXTRA_SUBJECTS}]")
    return tuple(extra_subject_name(i) for i in range(1, n + 1))


def is_extra_subject(name: str) -> bool:
    """True for U01 ... U999 (written as :func:`extra_subject_name` writes them)."""
    m = _EXTRA_NAME.fullmatch(name)
    return bool(m) and 1 <= int(m.group(1)) <= MAX_EXTRA_SUBJECTS and \
        extra_subject_name(int(m.group(1))) == name


def is_synthetic_subject(name: str) -> bool:
    """True for the names the generator accepts: :data:`KNOWN_SUBJECTS` and U01..U999."""
    return name in KNOWN_SUBJECTS or is_extra_subject(name)

# Palettes (RGB). Kept away from pure black: the background-removed look is black,
# and a body part must stay distinguishable from it even in shadow.
_SKIN = ((235, 200, 170), (222, 180, 140), (198, 145, 105), (160, 110, 75), (110, 75, 50),
         (245, 215, 190))
_HAIR = ((40, 30, 25), (90, 60, 35), (150, 110, 60), (200, 170, 110), (60, 60, 60),
         (120, 40, 30))
_CLOTH = ((200, 40, 40), (40, 90, 200), (40, 150, 70), (230, 200, 60), (150, 60, 170),
          (240, 240, 240), (90, 90, 100), (230, 120, 40), (60, 170, 190), (170, 30, 90),
          (120, 90, 60), (30, 50, 110))
_TROUSERS = ((40, 55, 110), (70, 70, 75), (120, 100, 70), (30, 90, 60), (160, 150, 130),
             (90, 40, 40), (50, 50, 60))
_SHOES = ((230, 230, 230), (60, 45, 35), (200, 50, 50), (70, 70, 80), (40, 90, 170))


@dataclasses.dataclass(frozen=True)
class BodyShape:
    """Bone lengths and limb radii (mm) of one subject."""

    height: float          # standing height, floor to crown
    pelvis_width: float    # RHip <-> LHip
    shoulder_width: float  # RShoulder <-> LShoulder
    thigh: float           # hip -> knee
    shin: float            # knee -> ankle (the H36M "Foot" joint)
    spine: float           # Hip -> Spine
    chest: float           # Spine -> Thorax
    neck: float            # Thorax -> Neck/Nose
    head: float            # Neck/Nose -> Head (top)
    upper_arm: float       # shoulder -> elbow
    forearm: float         # elbow -> wrist
    girth: float           # limb thickness multiplier (1 = average)
    belly: float           # torso width at the waist relative to the pelvis


@dataclasses.dataclass(frozen=True)
class Look:
    """Appearance of one subject. Colours are RGB uint8 triples."""

    skin: tuple
    hair: tuple
    shirt: tuple
    shirt_pattern: str       # "plain", "stripes" or "chest_band"
    pattern_colour: tuple
    long_sleeves: bool
    trousers: tuple
    long_trousers: bool
    shoes: tuple
    hair_long: bool
    strap_side: str          # "L", "R" or "": shoulder a bag strap hangs from (crosses the chest)
    strap_colour: tuple
    watch_side: str          # "L" or "R"
    stripe_side: str         # "L", "R" or "": trouser leg with a side stripe
    stripe_colour: tuple


@dataclasses.dataclass(frozen=True)
class Subject:
    """A synthetic person: name, body shape and look."""

    name: str
    body: BodyShape
    look: Look


def _rng_for(name: str, seed: int, salt: str) -> np.random.Generator:
    # crc32, not hash(): Python's string hash is salted per process, which would break
    # determinism across workers.
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode()),
                                  zlib.crc32(salt.encode())])


def make_body(rng: np.random.Generator) -> BodyShape:
    """Draws plausible adult proportions (heights about 1.55 - 1.95 m)."""
    height = float(np.clip(rng.normal(1740, 90), 1550, 1950))
    s = height / 1740.0

    def part(mean, sd=0.04):
        return float(mean * s * (1 + rng.normal(0, sd)))

    return BodyShape(
        height=height, pelvis_width=part(250, 0.08), shoulder_width=part(330, 0.07),
        thigh=part(445), shin=part(440), spine=part(230, 0.05), chest=part(250, 0.05),
        neck=part(110, 0.08), head=part(120, 0.06), upper_arm=part(285), forearm=part(250),
        girth=float(np.clip(rng.normal(1.0, 0.12), 0.75, 1.35)),
        belly=float(np.clip(rng.normal(0.95, 0.1), 0.75, 1.25)))


def make_look(rng: np.random.Generator) -> Look:
    """Draws clothing, skin and hair colours and the asymmetric (left/right) cues."""
    def pick(palette, avoid=()):
        options = [c for c in palette if c not in avoid] or list(palette)
        base = np.asarray(options[rng.integers(len(options))], np.float64)
        # Small per-subject tint so two subjects with the same palette entry still differ.
        return tuple(int(v) for v in np.clip(base + rng.normal(0, 12, 3), 25, 250))

    def pick_natural(palette):
        # Skin and hair vary in brightness only: a hue shift would look unnatural.
        base = np.asarray(palette[rng.integers(len(palette))], np.float64)
        return tuple(int(v) for v in np.clip(base * rng.uniform(0.9, 1.08), 25, 250))

    shirt = pick(_CLOTH)
    trousers = pick(_TROUSERS)
    return Look(
        skin=pick_natural(_SKIN), hair=pick_natural(_HAIR), shirt=shirt,
        shirt_pattern=("plain", "stripes", "chest_band")[rng.integers(3)],
        pattern_colour=pick(_CLOTH, avoid=(shirt,)), long_sleeves=bool(rng.random() < 0.5),
        trousers=trousers, long_trousers=bool(rng.random() < 0.75), shoes=pick(_SHOES),
        hair_long=bool(rng.random() < 0.35), strap_side=("L", "R", "")[rng.integers(3)],
        strap_colour=pick(((30, 30, 30), (140, 80, 40), (200, 60, 40), (230, 230, 230))),
        watch_side="LR"[rng.integers(2)], stripe_side=("", "L", "R")[rng.integers(3)],
        stripe_colour=pick(((240, 240, 240), (240, 220, 40), (230, 60, 60))))


def take_look(subject: Subject, seed: int, take_key: str) -> Look:
    """A new outfit for one take of ``subject``: clothes, patterns and which side carries
    the asymmetric cues (strap, watch, trouser stripe) are redrawn; skin and hair stay the
    person's.

    With one look per person, a flip head can learn each training person's own left/right
    cues instead of comparing the two views (measured: 0.98 on training people, 0.62 on new
    ones). Redrawing the cues' sides per take takes that shortcut away.

    Args:
      subject: the person (from :func:`make_subject`).
      seed: dataset seed.
      take_key: identifies the take (e.g. ``"Walking/0"``); same key, same look.
    """
    look = make_look(_rng_for(subject.name, seed, f"look/{take_key}"))
    base = subject.look
    return dataclasses.replace(look, skin=base.skin, hair=base.hair, hair_long=base.hair_long)


def make_subject(name: str, seed: int = 0) -> Subject:
    """The subject called ``name`` (body and look are fixed by name and ``seed``).

    Any name works (e.g. for tests and rig converters); the generator restricts itself
    to :data:`KNOWN_SUBJECTS` and the extra people of :func:`extra_subjects`.
    """
    return Subject(name=name, body=make_body(_rng_for(name, seed, "body")),
                   look=make_look(_rng_for(name, seed, "look")))
