"""Pair grouping (``--pair_grouping``): the frames of one pretext element and the pairs scored.

============ ====================================================== ========== ============
grouping     one element                                            frames     pairs scored
============ ====================================================== ========== ============
``pairs``    one pair of frames (the paper)                         2          1
``quads``    C = 2 different cameras at two unsynchronized instants 4          4
``hexes``    C = 3 cameras at two instants                          6          12
``octets``   C = 4 cameras at two instants (the CPU default,        8          24
             ``flags/pretrain_synthetic.flags``)
============ ====================================================== ========== ============

A group's frames are cameras ``a, b, ...`` at ``t1``, then the same cameras at ``t2``
(``a2, b2, ...``); its model (:func:`tf_synchro.models.siamese.build_group_model`) scores
every pair of :func:`pairs`, and the labels of :mod:`tf_synchro.data.pairs` follow the same
order: same-instant pairs synchronized, cross-instant pairs of two cameras unsynchronized
(what the labels mean: :class:`tf_synchro.configs.PairConfig`). This module is the one home
of these names and orders; it imports neither TensorFlow nor Keras.
"""
from __future__ import annotations

PAIRS = "pairs"  # The paper's sampling: one pair per element.
GROUPINGS = (PAIRS, "quads", "hexes", "octets")
# Cameras per instant of the groupings that draw C cameras at two instants (2C frames).
CAMERAS = {"quads": 2, "hexes": 3, "octets": 4}


def is_group(grouping: str) -> bool:
    """Whether ``grouping`` draws C cameras at two instants (anything but plain pairs)."""
    return grouping != PAIRS


def cameras(grouping: str) -> int:
    """Different cameras one element needs in multi-view mode (2 for plain pairs)."""
    return CAMERAS.get(grouping, 2)


def frames(grouping: str) -> tuple:
    """Frame names of one element: ``("a", "b")`` for pairs; for a grouping of C cameras,
    cameras ``a, b, ...`` at ``t1``, then the same cameras at ``t2`` (``a2, b2, ...``)."""
    if not is_group(grouping):
        return ("a", "b")
    cams = "abcdefgh"[:CAMERAS[grouping]]
    return tuple(cams) + tuple(f"{c}2" for c in cams)


def pairs(grouping: str) -> tuple:
    """The pairs a grouping's model scores, as indices into :func:`frames`, in the order of
    the blocks of its ``[P*B]`` outputs and labels: every same-instant pair at ``t1``, then
    at ``t2``, then every cross-instant pair of two different cameras (``t1`` frame first)."""
    if not is_group(grouping):
        return ((0, 1),)
    c = CAMERAS[grouping]
    same = tuple((t * c + i, t * c + j) for t in (0, 1) for i in range(c) for j in range(i + 1, c))
    return same + tuple((i, c + j) for i in range(c) for j in range(c) if i != j)


def view_keys(grouping: str) -> tuple:
    """Model input names of a grouping's frames (``view_a``, ``view_b``, ... ``view_a2`` ...)."""
    return tuple(f"view_{v}" for v in frames(grouping))


ALL_FRAMES = frames(GROUPINGS[-1])  # The largest group's: every frame name in use.
