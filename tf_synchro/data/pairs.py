"""tf.data pipeline of pretext pairs for self-supervised pre-training (docs/DESIGN.md §1).

Three pair types, drawn in equal numbers from each clip (one sequence window, all views):

=============== ============================================== ========== ==========
type            frames                                         sync head  flip head
=============== ============================================== ========== ==========
``SYNC``        (x[v1, t], x[v2, t]), v1 != v2                 1          0
``UNSYNC``      (x[v1, t1], x[v2, t2]), d_min < |dt| < d_max   0          masked
``FLIP``        a SYNC pair with one frame (either) mirrored   masked     1
=============== ============================================== ========== ==========

With ``pair_grouping="quads"``, ``"hexes"`` or ``"octets"`` (the CPU default) an element is
instead 2C frames, C = 2, 3 or 4 different cameras at two unsynchronized timesteps ``t1, t2``
(``image_a, image_b, ...`` at ``t1``, ``image_a2, ...`` at ``t2``), and the model scores the
pairs of :func:`tf_synchro.data.groups.pairs` (see :mod:`tf_synchro.data.groups`); labels
and weights are then ``[P*B, 1]`` and ``[P*B]``, one block of ``B`` per pair, in that order.

``dt`` is measured in original frame numbers (``clip/frame_index``), so frames dropped by
the motion filter do not shrink it. An unsynchronized pair takes ``t1`` uniformly among
timesteps that have a partner in range, then ``t2`` among those partners weighted by the
frames each stands for (``gap_sampling="clip"``, the default; over a clip this leans to
small gaps, because timesteps near the clip ends have partners on one side only), or draws
``|dt|`` first, uniform in range, then ``t1`` (``gap_sampling="uniform"``).

Elements are ``(features, labels, sample_weights)`` for ``model.fit``::

    features = {"view_a": float32 [B, S, S, 3] in [0, 255], "view_b": same}
    labels   = {"sync": float32 [B, 1], "flip": float32 [B, 1]}
    weights  = {"sync": float32 [B], "flip": float32 [B]}   # 0 = masked for that head

or, with ``PairConfig(device_augment=True)`` (what ``tf_synchro.pretrain`` uses by default),
whole decoded frames and the augmentation draws, turned into crops on the accelerator by
:class:`tf_synchro.models.view_augment.ViewAugment`::

    features = {"view_a": uint8 [B, H, W, 3] (stored size), "view_b": same,
                "aug_a": float32 [B, 7] (crop window, mirror, jitter), "aug_b": same}

plus, with ``with_metadata=True``, a fourth dict (pair type, time gap, views, frame
numbers, flipped side, subject, sequence id) for the pretext evaluation.

Cost: a clip record is parsed once (only the features pairs need) and ``pairs_per_clip``
pairs are drawn and made from it in one tf.data element; only the two chosen JPEGs of
each pair are decoded; on the host path resizing and colour jitter run vectorised over the
clip's frames (on the device path they leave tf.data altogether).
"""
from __future__ import annotations

import random
from typing import Callable, Optional, Sequence

import tensorflow as tf

from tf_synchro import configs
from tf_synchro.configs import PairConfig  # noqa: F401  (its home)
from tf_synchro.data import augment, groups, records, service
from tfrecords_tools import schema

SYNC, UNSYNC, FLIP = 0, 1, 2
PAIR_TYPE_NAMES = ("sync", "unsync", "flip")
TASK_PAIR_TYPES = {  # Pair types that carry a label for a set of heads (no wasted pairs).
    ("sync",): (SYNC, UNSYNC),
    ("flip",): (SYNC, FLIP),
    ("sync", "flip"): (SYNC, UNSYNC, FLIP),
}
assert set(TASK_PAIR_TYPES) == set(configs.TASK_SETS)
# Per-pair fields kept for training (metadata only travels with with_metadata=True).
_TRAIN_KEYS = ("pair_type",) + tuple(
    f"{field}_{frame}" for frame in groups.ALL_FRAMES for field in ("image", "jitter", "aug")
) + tuple(f"flip_{frame}" for frame in groups.ALL_FRAMES if frame.endswith("2"))  # Groups'.
# Record features the pair pipeline reads (the rest is not parsed).
_KEYS = ("sequence/subject", "sequence/id", "clip/frame_index", "clip/num_views",
         "image/size", "image/encoded")


# ----------------------------------------------------------------------------- checks

def pair_types(config: PairConfig) -> tuple:
    """The pair types drawn for ``config.tasks``."""
    return TASK_PAIR_TYPES[tuple(config.tasks)]


def frame_names(config: PairConfig) -> tuple:
    """The frames of one element: ``("a", "b")``, or those of a group."""
    return groups.frames(config.pair_grouping)


def needs_partners(config: PairConfig) -> bool:
    """Whether each clip needs two timesteps d_min < |dt| < d_max apart: for unsynchronized
    pairs, and for every group (its two instants)."""
    return UNSYNC in pair_types(config) or groups.is_group(config.pair_grouping)


def min_views(config: PairConfig) -> int:
    """Cameras a record needs: 2 for multi-view pairs, C for groups of C cameras."""
    if config.views != "multi":
        return 1
    return groups.cameras(config.pair_grouping)


def check_records(files: Sequence[str], config: PairConfig, max_records: int = 64) -> dict:
    """Checks, before training, that records can give every pair type.

    Reads up to ``max_records`` records (the first of each shard first) and checks each has
    at least two views (multi-view mode) and two timesteps more than ``d_min`` and less
    than ``d_max`` frames apart. Clips that fail are skipped by the pipeline; if all
    checked ones fail, training could never start, so this raises.

    With ``device_augment`` it also checks that all checked records share one stored image
    size of at least the input size (whole frames are batched).

    Returns:
      ``{"checked": n, "usable": n_ok, "num_views": max V, "max_span": max frame span,
      "image_size": max stored side}``.

    Raises:
      ValueError: naming a failing record and what it lacks.
    """
    config.validate()
    spec = {k: schema.tf_feature_spec()[k] for k in
            ("sequence/id", "clip/index", "clip/num_views", "clip/frame_index", "image/size")}
    per_file = max(1, max_records // max(len(files), 1))
    read = ((lambda f: tf.data.TFRecordDataset(f).ignore_errors().take(per_file))
            if config.skip_corrupt_records else
            (lambda f: tf.data.TFRecordDataset(f).take(per_file)))
    ds = tf.data.Dataset.from_tensor_slices(list(files)).interleave(
        read, cycle_length=len(files) or 1)
    ds = ds.take(max_records).map(lambda s: tf.io.parse_single_example(s, spec))
    checked = usable = max_views = max_span = 0
    sizes = set()
    first_error = None
    for rec in ds.as_numpy_iterator():
        checked += 1
        views = int(rec["clip/num_views"])
        fi = rec["clip/frame_index"].astype("int64")
        gaps = abs(fi[:, None] - fi[None, :])
        span = int(fi[-1] - fi[0]) if len(fi) else 0
        max_views, max_span = max(max_views, views), max(max_span, span)
        sizes.add(int(rec["image/size"]))
        where = f"record {rec['sequence/id'].decode()!r} clip {int(rec['clip/index'])}"
        if views < min_views(config):
            first_error = first_error or (
                f"{where} has {views} view(s); multi-view {config.pair_grouping} need at "
                f"least {min_views(config)} (or use views='single')")
        elif needs_partners(config) and not (
                (gaps > config.d_min) & (gaps < config.d_max)).any():
            first_error = first_error or (
                f"{where} spans {span} frames: no two timesteps lie more than --d_min="
                f"{config.d_min} and less than --d_max={config.d_max} frames apart")
        else:
            usable += 1
    if checked == 0:
        raise ValueError(f"no records in {list(files)[:3]}...")
    if usable == 0:
        raise ValueError(f"none of the {checked} records checked can give all pair types: "
                         f"{first_error}")
    if config.device_augment and (len(sizes) > 1 or min(sizes) < config.augment.output_size):
        raise ValueError(
            f"device augmentation batches whole stored frames: it needs one stored image size "
            f">= the input size {config.augment.output_size}, the records have {sorted(sizes)} "
            f"(use host augmentation, or rewrite the dataset with one --image_size)")
    return {"checked": checked, "usable": usable, "num_views": max_views, "max_span": max_span,
            "image_size": max(sizes)}


# ----------------------------------------------------------------------------- sampling

def _partner_ranges(fi: tf.Tensor, config: PairConfig):
    """Per timestep, the index ranges of partners d_min < |dt| < d_max frames away.

    ``frame_index`` increases, so the partners form two contiguous ranges, found by binary
    search: O(T log T) instead of a [T, T] gap matrix. Returns ``(lo_minus, hi_minus,
    lo_plus, hi_plus)``, int32 [T] each, half-open ranges (possibly empty).
    """
    def search(values, side):
        return tf.cast(tf.searchsorted(fi, values, side=side), tf.int32)

    lo_plus, hi_plus = search(fi + config.d_min, "right"), search(fi + config.d_max, "left")
    lo_minus, hi_minus = search(fi - config.d_max, "right"), search(fi - config.d_min, "left")
    return lo_minus, tf.maximum(hi_minus, lo_minus), lo_plus, tf.maximum(hi_plus, lo_plus)


def _usable(clip: dict, config: PairConfig) -> tf.Tensor:
    """True if the clip can give every pair type (graph version of :func:`check_records`)."""
    ok = tf.constant(True)
    if config.views == "multi":
        ok = tf.logical_and(ok, clip["clip/num_views"] >= min_views(config))
    if needs_partners(config):
        _, _, lo_plus, hi_plus = _partner_ranges(clip["clip/frame_index"], config)
        ok = tf.logical_and(ok, tf.reduce_any(hi_plus > lo_plus))
    return ok


def _unsync_times(fi: tf.Tensor, k: int, key_t1: tf.Tensor, key_t2: tf.Tensor,
                  config: PairConfig):
    """``k`` unsynchronized time index pairs ``(t1, t2)`` of one clip (int32 [k] each).

    The clip must have a partner pair in range (:func:`_usable` filters for it).
    """
    # t1 uniform over timesteps with a partner in (d_min, d_max); then t2
    # among those partners with probability proportional to the frames each kept timestep
    # stands for (half the distance to its neighbours). Where the motion filter dropped
    # frames unevenly this keeps |dt| close to uniform over (d_min, d_max) instead of
    # favouring the densely kept (fast-moving) stretches next to t1.
    lo_m, hi_m, lo_p, hi_p = _partner_ranges(fi, config)
    padded = tf.concat([fi[:1], fi, fi[-1:]], 0)
    span = tf.cast(tf.maximum(padded[2:] - padded[:-2], 1), tf.float32)
    cum = tf.concat([[0.0], tf.cumsum(span)], 0)  # Weight of range [a, b) = cum[b] - cum[a].
    w_m = tf.gather(cum, hi_m) - tf.gather(cum, lo_m)
    w_p = tf.gather(cum, hi_p) - tf.gather(cum, lo_p)
    rows = tf.cast(tf.where(w_m + w_p > 0)[:, 0], tf.int32)  # Non-empty: _usable filtered.
    pick = tf.random.stateless_uniform([k], key_t1, 0, tf.maximum(tf.size(rows), 1),
                                       dtype=tf.int32)
    t1 = tf.gather(rows, pick)
    # Inverse-CDF draw over the span weights of t1's two partner ranges.
    u = tf.random.stateless_uniform([k], key_t2) * (tf.gather(w_m, t1) + tf.gather(w_p, t1))
    in_minus = u < tf.gather(w_m, t1)
    lo = tf.where(in_minus, tf.gather(lo_m, t1), tf.gather(lo_p, t1))
    hi = tf.where(in_minus, tf.gather(hi_m, t1), tf.gather(hi_p, t1))
    target = tf.gather(cum, lo) + tf.where(in_minus, u, u - tf.gather(w_m, t1))
    t2 = tf.cast(tf.searchsorted(cum, target, side="right"), tf.int32) - 1
    t2 = tf.clip_by_value(t2, lo, hi - 1)  # Guards float round-off at the range ends.
    if config.gap_sampling == "uniform":
        # Same two keys, folded: the "clip" draw above stays bit-identical for old seeds and
        # is the fallback where a gap has no kept frame in range.
        g1, g2 = tf.random.experimental.stateless_fold_in(key_t1, 1), \
            tf.random.experimental.stateless_fold_in(key_t2, 1)
        t1, t2 = _uniform_gap_times(fi, k, g1, g2, config, (lo_m, hi_m, lo_p, hi_p), t1, t2)
    return t1, t2


def _uniform_gap_times(fi, k, key_gap, key_t1, config, ranges, fallback_t1, fallback_t2):
    """Gap-first unsynchronized draw (``gap_sampling="uniform"``, see :class:`PairConfig`)."""
    lo_m, hi_m, lo_p, hi_p = ranges
    num_t = tf.shape(fi)[0]
    first, last = fi[0], fi[-1]
    g_lo = tf.constant(config.d_min + 1, fi.dtype)
    g_hi = tf.minimum(tf.constant(config.d_max - 1, fi.dtype), last - first)
    n_gaps = tf.maximum(g_hi - g_lo + 1, 1)  # _usable guarantees g_hi >= g_lo.
    gap = g_lo + tf.minimum(tf.cast(tf.random.stateless_uniform([k], key_gap) *
                                    tf.cast(n_gaps, tf.float32), fi.dtype), n_gaps - 1)
    # (t1, direction) choices: t1 + gap stays inside the clip (forward: the first n_fwd
    # timesteps) or t1 - gap does (backward: the last n_bwd). One uniform draw over both.
    n_fwd = tf.cast(tf.searchsorted(fi, last - gap, side="right"), tf.int32)
    n_bwd = num_t - tf.cast(tf.searchsorted(fi, first + gap, side="left"), tf.int32)
    n_all = tf.maximum(n_fwd + n_bwd, 1)
    j = tf.minimum(tf.cast(tf.random.stateless_uniform([k], key_t1) *
                           tf.cast(n_all, tf.float32), tf.int32), n_all - 1)
    fwd = j < n_fwd
    t1 = tf.where(fwd, j, num_t - n_bwd + (j - n_fwd))
    target = tf.gather(fi, t1) + tf.where(fwd, gap, -gap)
    lo = tf.where(fwd, tf.gather(lo_p, t1), tf.gather(lo_m, t1))
    hi = tf.where(fwd, tf.gather(hi_p, t1), tf.gather(hi_m, t1))
    # Nearest kept frame to the target among t1's partners on that side.
    after = tf.cast(tf.searchsorted(fi, target, side="left"), tf.int32)
    up = tf.clip_by_value(after, lo, tf.maximum(hi - 1, lo))
    down = tf.clip_by_value(after - 1, lo, tf.maximum(hi - 1, lo))
    safe_up = tf.minimum(up, num_t - 1)
    safe_down = tf.minimum(down, num_t - 1)
    t2 = tf.where(tf.abs(tf.gather(fi, safe_down) - target) <=
                  tf.abs(tf.gather(fi, safe_up) - target), safe_down, safe_up)
    ok = hi > lo  # Else (a hole in the kept frames) keep the "clip" draw for this pair.
    return tf.where(ok, t1, fallback_t1), tf.where(ok, t2, fallback_t2)


def _sample_pairs(clip: dict, key: tf.Tensor, config: PairConfig) -> dict:
    """Draws ``pairs_per_clip`` pairs from one parsed clip; returns per-pair tensors [K, ...]."""
    k = config.pairs_per_clip
    keys = tf.random.experimental.stateless_split(key, 7)
    fi = clip["clip/frame_index"]
    num_t = tf.shape(fi)[0]
    num_v = tf.cast(clip["clip/num_views"], tf.int32)

    # Pair types cycle from a random start: exact balance per clip when k is a multiple
    # of the number of types, and balance within one type otherwise.
    types_const = tf.constant(pair_types(config), tf.int32)
    n_types = len(pair_types(config))
    start = tf.random.stateless_uniform([], keys[0], 0, n_types, dtype=tf.int32)
    types = tf.gather(types_const, (tf.range(k) + start) % n_types)

    # Views: v2 uniform over the other cameras (shift past v1), or v1 itself (single view).
    v1 = tf.random.stateless_uniform([k], keys[1], 0, num_v, dtype=tf.int32)
    if config.views == "multi":
        v2 = tf.random.stateless_uniform([k], keys[2], 0, tf.maximum(num_v - 1, 1),
                                         dtype=tf.int32)
        v2 = v2 + tf.cast(v2 >= v1, tf.int32)
    else:
        v2 = v1

    # Times. Synchronized: one uniform timestep.
    t_sync = tf.random.stateless_uniform([k], keys[3], 0, num_t, dtype=tf.int32)
    unsync = types == UNSYNC
    if UNSYNC in pair_types(config):
        t1, t2 = _unsync_times(fi, k, keys[4], keys[5], config)
        t_a = tf.where(unsync, t1, t_sync)
        t_b = tf.where(unsync, t2, t_sync)
    else:  # Flip-only: no unsynchronized pairs, and clips need no partners in range.
        t_a = t_b = t_sync

    # Flipped pairs mirror either frame with probability 1/2.
    side = tf.random.stateless_uniform([k], keys[6], 0, 2, dtype=tf.int32)
    is_flip = types == FLIP
    encoded = clip["image/encoded"]
    frame_a, frame_b = tf.gather(fi, t_a), tf.gather(fi, t_b)
    return {
        "jpeg_a": tf.gather_nd(encoded, tf.stack([t_a, v1], -1)),
        "jpeg_b": tf.gather_nd(encoded, tf.stack([t_b, v2], -1)),
        "flip_a": is_flip & (side == 0),
        "flip_b": is_flip & (side == 1),
        "pair_type": types,
        "gap": tf.abs(frame_b - frame_a),
        "camera_a": v1,
        "camera_b": v2,
        "frame_a": frame_a,
        "frame_b": frame_b,
        "subject": tf.fill([k], clip["sequence/subject"]),
        "sequence_id": tf.fill([k], clip["sequence/id"]),
    }


def _sample_group(clip: dict, key: tf.Tensor, config: PairConfig) -> dict:
    """Draws ``pairs_per_clip`` groups from one parsed clip (``pair_grouping`` quads/hexes/octets).

    C different cameras (a uniform draw without replacement; one camera C times with
    ``views="single"``) at two timesteps ``t1, t2`` drawn as an unsynchronized pair is;
    with a flip head one of the C ``t2`` frames, uniformly, is mirrored.
    """
    k = config.pairs_per_clip
    c = groups.cameras(config.pair_grouping)
    keys = tf.random.experimental.stateless_split(key, 4)
    fi = clip["clip/frame_index"]
    num_v = tf.cast(clip["clip/num_views"], tf.int32)
    if config.views == "multi":  # The first C of a random order of the cameras.
        cams = tf.argsort(tf.random.stateless_uniform(tf.stack([k, num_v]), keys[0]),
                          axis=1)[:, :c]
    else:
        cams = tf.tile(tf.random.stateless_uniform([k, 1], keys[0], 0, num_v, dtype=tf.int32),
                       [1, c])
    t1, t2 = _unsync_times(fi, k, keys[1], keys[2], config)
    mirror = tf.random.stateless_uniform([k], keys[3], 0, c, dtype=tf.int32)
    encoded = clip["image/encoded"]
    out = {}
    for index, name in enumerate(frame_names(config)):
        cam, later = index % c, index >= c  # Frames: C cameras at t1, then at t2.
        t = t2 if later else t1
        out[f"jpeg_{name}"] = tf.gather_nd(encoded, tf.stack([t, cams[:, cam]], -1))
        out[f"flip_{name}"] = tf.logical_and(tf.constant(later and "flip" in config.tasks),
                                             tf.equal(mirror, cam))
    return out


def _per_frame(field: str, values: tf.Tensor, names: tuple) -> dict:
    """``{f"{field}_{name}": block}``: ``values`` holds one equal block per frame name."""
    return dict(zip((f"{field}_{v}" for v in names), tf.split(values, len(names))))


def _decode_pairs(clip: dict, key: tf.Tensor, config: PairConfig, with_metadata: bool) -> dict:
    """Samples a clip's pairs and makes their images: uint8 [K, S, S, 3] per view (device
    path: the whole stored frames [K, H, W, 3] and their draws ``aug_a``/``aug_b``).

    Done per clip, not per pair: tf.data's per-element cost is paid once per clip,
    ``map_fn`` decodes and slices (mirrors) each frame's window, and one batched resize
    serves all 2K frames. For that the 2K windows of a clip share one random side (scale);
    their positions are independent. Colour jitter factors are drawn here and applied
    after batching (see :func:`_to_model_inputs`).
    """
    aug = config.augment
    k_pairs, k_crop, k_jitter = tf.unstack(tf.random.experimental.stateless_split(key, 3))
    sample = _sample_group if groups.is_group(config.pair_grouping) else _sample_pairs
    p = sample(clip, k_pairs, config)
    k = config.pairs_per_clip
    names = frame_names(config)
    n = len(names) * k  # All of frame "a", then all "b" (and "a2", "b2").
    jpegs = tf.concat([p.pop(f"jpeg_{v}") for v in names], 0)
    flips = tf.concat([p[f"flip_{v}"] for v in names], 0)
    size = tf.cast(clip["image/size"], tf.int32)
    if config.training:
        windows = augment.random_crop_windows(k_crop, n, size, aug, shared_side=True)
    else:
        windows = tf.tile(augment.central_crop_window(size, aug.central_scale)[None], [n, 1])
    if config.device_augment:
        # Whole frames and the draws; the model's ViewAugment layer crops, mirrors, resizes
        # and jitters them on the accelerator.
        images = tf.map_fn(
            lambda j: tf.io.decode_jpeg(j, channels=3, dct_method=aug.dct_method), jpegs,
            fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
        jitter = (augment.jitter_factors_batch(k_jitter, n, aug) if config.training
                  else tf.tile(tf.constant([[0.0, 1.0, 1.0]]), [n, 1]))
        params = tf.concat([tf.cast(windows[:, :3], tf.float32),
                            tf.cast(flips, tf.float32)[:, None], jitter], axis=1)
        p.update(_per_frame("aug", params, names))
    else:
        crops = tf.map_fn(
            lambda a: augment.decode_window(a[0], a[1], a[2], aug.dct_method),
            (jpegs, windows, flips), fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
        images = tf.image.resize(crops, [aug.output_size, aug.output_size], method="bilinear")
        # uint8 keeps the pair shuffle buffer 4x smaller than float. Bilinear of uint8 cannot
        # overshoot [0, 255], so +0.5 rounds.
        images = tf.ensure_shape(tf.cast(images + 0.5, tf.uint8),
                                 [None, aug.output_size, aug.output_size, 3])
        if config.training:
            jitter = augment.jitter_factors_batch(k_jitter, n, aug)
            p.update(_per_frame("jitter", jitter, names))
    p.update(_per_frame("image", images, names))
    if not with_metadata:  # Fewer components make unbatch/shuffle/batch cheaper per pair.
        p = {name: v for name, v in p.items() if name in _TRAIN_KEYS}
    return p


def _to_model_inputs(b: dict, config: PairConfig, with_metadata: bool):
    """Batched pair dict -> (features, labels, sample_weights[, metadata])."""
    features = {}
    for view in frame_names(config):
        if config.device_augment:  # uint8 frames + draws: see tf_synchro.models.view_augment.
            features[f"view_{view}"] = b[f"image_{view}"]
            features[f"aug_{view}"] = b[f"aug_{view}"]
            continue
        images = tf.cast(b[f"image_{view}"], tf.float32)
        if config.training:  # Vectorised over the batch: one colour matrix per image.
            images = augment.apply_colour_jitter(images, b[f"jitter_{view}"])
        features[f"view_{view}"] = images
    if groups.is_group(config.pair_grouping):
        return (features,) + _group_labels(b, config)
    t = b["pair_type"]
    labels, weights = {}, {}
    if "sync" in config.tasks:
        labels["sync"] = tf.cast(t == SYNC, tf.float32)[:, None]
        weights["sync"] = tf.cast(t != FLIP, tf.float32)  # The sync head never sees FLIP.
    if "flip" in config.tasks:
        labels["flip"] = tf.cast(t == FLIP, tf.float32)[:, None]
        weights["flip"] = tf.cast(t != UNSYNC, tf.float32)  # The flip head never sees UNSYNC.
    if not with_metadata:
        return features, labels, weights
    meta = {k: b[k] for k in ("pair_type", "gap", "camera_a", "camera_b", "frame_a", "frame_b",
                              "flip_a", "flip_b", "subject", "sequence_id")}
    return features, labels, weights, meta


def _group_labels(b: dict, config: PairConfig):
    """Labels ``[P*B, 1]`` and weights ``[P*B]`` of a batch of groups, one block of ``B``
    per pair of :func:`tf_synchro.data.groups.pairs`, in that order.

    Sync: same-instant pairs are synchronized, cross-instant pairs are not; a pair holding
    the mirrored frame is masked. Flip: the same-instant pairs, flipped where they hold the
    mirrored frame; the flip head never sees a cross-instant pair (as with pairs, it never
    sees an unsynchronized one).
    """
    names = frame_names(config)
    zero = tf.zeros(tf.shape(b[f"image_{names[0]}"])[:1], tf.float32)
    mirrored = [tf.cast(b[f"flip_{n}"], tf.float32) if f"flip_{n}" in b else zero
                for n in names]
    c = len(names) // 2
    blocks = {"sync": ([], []), "flip": ([], [])}
    for i, j in groups.pairs(config.pair_grouping):
        m = mirrored[i] + mirrored[j]  # At most one frame of a group is mirrored.
        same = (i < c) == (j < c)
        blocks["sync"][0].append(zero + float(same))
        blocks["sync"][1].append(1.0 - m)
        blocks["flip"][0].append(m if same else zero)
        blocks["flip"][1].append(zero + float(same))
    labels, weights = {}, {}
    for task in config.tasks:
        labels[task] = tf.concat(blocks[task][0], 0)[:, None]
        weights[task] = tf.concat(blocks[task][1], 0)
    return labels, weights


# ----------------------------------------------------------------------------- the pipeline

def pair_dataset(files: Sequence[str], config: PairConfig, batch_size: int,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 with_metadata: bool = False, drop_remainder: Optional[bool] = None
                 ) -> tf.data.Dataset:
    """Batched pretext pairs from record shards (see module doc for the element layout).

    Args:
      files: shard paths (:func:`tf_synchro.data.records.dataset_files`).
      config: pipeline settings.
      batch_size: batch of this input pipeline (per replica under distribution).
      input_context: from ``distribute_datasets_from_function``; shards the records and
        gives each pipeline its own random stream.
      with_metadata: add the per-pair metadata dict (evaluation).
      drop_remainder: default True when training (static batch for the replicas).
    """
    config.validate()
    if with_metadata and groups.is_group(config.pair_grouping):
        raise ValueError("pair metadata (evaluation) is drawn from plain pairs: use "
                         "pair_grouping='pairs'")
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
    # Disjoint random streams per input pipeline: same seed, different pipeline id.
    base_key = tf.constant([seed, pipeline_id], tf.int64)

    # Files -> shuffle files -> shard -> interleave -> parse (records.clip_dataset), parsing
    # only what pairs need. Repeat is done there on the file list so the interleave never
    # drains.
    ds = records.clip_dataset(
        files, subjects=config.subjects, input_context=input_context,
        shuffle=config.training, repeat=config.passes is None, seed=seed,
        deterministic=config.deterministic, cycle_length=config.cycle_length, keys=_KEYS,
        skip_corrupt=config.skip_corrupt_records)
    if config.passes is not None and config.passes > 1:
        ds = ds.repeat(config.passes)
    ds = ds.filter(lambda c: _usable(c, config))
    # One key per clip from its position in the stream: stateless draws make the pairs
    # independent of map parallelism, so a seed fixes them exactly. Each clip yields
    # pairs_per_clip decoded pairs: the record parse and per-element costs are amortised.
    # A clip holding a JPEG that does not decode is skipped with --skip_corrupt_records.
    ds = records.map_decoding(
        ds.enumerate(),
        lambda i, c: _decode_pairs(c, service.element_key(base_key, i, input_context),
                                   config, with_metadata),
        config.skip_corrupt_records,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)
    ds = ds.unbatch()
    # Separates pairs of the same clip; elements are uint8 crops (S*S*6 bytes a pair).
    if config.shuffle_buffer and config.training:
        ds = ds.shuffle(config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    # Static batch shape for the replicas when training; evaluation keeps the tail.
    ds = ds.batch(batch_size, drop_remainder=config.training if drop_remainder is None
                  else drop_remainder)
    # Float conversion and colour jitter after batching: vectorised over the batch.
    ds = ds.map(lambda b: _to_model_inputs(b, config, with_metadata),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)
    return ds.prefetch(tf.data.AUTOTUNE)


def dataset_fn(data_dir: str, config: PairConfig, global_batch_size: int
               ) -> Callable[[tf.distribute.InputContext], tf.data.Dataset]:
    """``input_context -> dataset`` for ``train_lib.distributed_dataset`` (per-replica batch).

    Raises:
      tfrecords_tools.dataset_io.DatasetError: the dataset is missing or has none of ``config.subjects``.
    """
    files = records.dataset_files(data_dir, config.subjects)

    def fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        batch = input_context.get_per_replica_batch_size(global_batch_size)
        return pair_dataset(files, config, batch, input_context)

    return fn

