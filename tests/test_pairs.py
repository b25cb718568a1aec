"""Pair pipeline: labels, masks, balance, flips, determinism, sharding, bad input; augment ops.

The fixture clips (:func:`tests.testutil.write_coded_dataset`) encode (timestep, view) in
each frame's colour and carry a left/right asymmetric stripe, so every pair the pipeline
makes can be checked against its labels from the pixels alone.
"""
import collections
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tests import testutil
from tf_synchro import configs
from tf_synchro.data import augment, groups, pairs
from tfrecords_tools import schema

SIZE = testutil.CODED_SIZE
V = testutil.CODED_V
FRAME_STEP = testutil.CODED_FRAME_STEP  # frame_index = 100 + 3 t: gaps are multiples of 3
D_MIN, D_MAX = 4, 30


@pytest.fixture(scope="module")
def coded_files(tmp_path_factory):
    return testutil.write_coded_dataset(tmp_path_factory.mktemp("coded"))


def _eval_config(**kw) -> pairs.PairConfig:
    """Exact pixels: full-window crop at the stored size, no jitter, fixed order."""
    base = dict(d_min=D_MIN, d_max=D_MAX, pairs_per_clip=6, training=False, seed=3,
                deterministic=True, passes=3,
                augment=augment.AugmentConfig(output_size=SIZE, eval_scale=1.0))
    base.update(kw)
    return pairs.PairConfig(**base)


def _collect(files, config, batch=8):
    out = collections.defaultdict(list)
    for x, y, w, m in pairs.pair_dataset(files, config, batch, with_metadata=True):
        for k, v in {**x, **{f"y_{k}": v for k, v in y.items()},
                     **{f"w_{k}": v for k, v in w.items()}, **m}.items():
            out[k].append(v.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def coded_pairs(coded_files):
    return _collect(coded_files, _eval_config())


def test_labels_masks_and_pixels_agree(coded_pairs):
    p = coded_pairs
    n = len(p["pair_type"])
    assert n == 4 * 6 * 3  # 4 clips x 6 pairs x 3 passes, tail batch kept in evaluation
    for i in range(n):
        ta, va, ma = testutil.decode_code(p["view_a"][i])
        tb, vb, mb = testutil.decode_code(p["view_b"][i])
        kind = p["pair_type"][i]
        assert (100 + FRAME_STEP * ta, 100 + FRAME_STEP * tb) == (p["frame_a"][i], p["frame_b"][i])
        assert (va, vb) == (p["camera_a"][i], p["camera_b"][i])
        assert va != vb, "multi-view pairs must come from two different cameras"
        assert (ma, mb) == (bool(p["flip_a"][i]), bool(p["flip_b"][i]))
        if kind == pairs.SYNC:
            assert ta == tb and not (ma or mb)
            assert (p["y_sync"][i, 0], p["w_sync"][i], p["y_flip"][i, 0], p["w_flip"][i]) == (1, 1, 0, 1)
        elif kind == pairs.UNSYNC:
            assert D_MIN < abs(tb - ta) * FRAME_STEP < D_MAX
            assert p["gap"][i] == abs(tb - ta) * FRAME_STEP
            assert not (ma or mb)
            assert (p["y_sync"][i, 0], p["w_sync"][i], p["w_flip"][i]) == (0, 1, 0)
        else:
            assert ta == tb and ma != mb, "a flipped pair mirrors exactly one frame"
            assert (p["w_sync"][i], p["y_flip"][i, 0], p["w_flip"][i]) == (0, 1, 1)


def test_unsync_gaps_cover_the_range(coded_pairs):
    gaps = coded_pairs["gap"][coded_pairs["pair_type"] == pairs.UNSYNC]
    # Valid gaps are multiples of 3 in (4, 30): 6 .. 27; most of them must appear.
    assert set(gaps) <= set(range(6, 30, 3)) and len(set(gaps)) >= 6


def test_unsync_gaps_spread_where_frames_were_dropped_unevenly(tmp_path):
    # Dense kept frames first (fast motion), sparse later: uniform partners would give
    # ~60% of gaps in the lowest third of (4, 128); weighting by covered span ~41%.
    fi = np.concatenate([np.arange(0, 60), np.arange(64, 400, 8)])
    files = testutil.write_coded_dataset(tmp_path / "uneven", subjects=("S1",), seqs=1,
                                         frame_index=fi)
    config = _eval_config(d_min=4, d_max=128, tasks=("sync",), pairs_per_clip=600, passes=1)
    gaps = _collect(files, config, batch=600)["gap"]
    gaps = gaps[gaps > 0]
    assert np.all((gaps > 4) & (gaps < 128))
    low = np.mean(gaps < 46)
    assert 0.33 < low < 0.5, low
    # Gap-first sampling is about uniform even here (a third below 46); both stay in range.
    uniform = _collect(files, dataclasses.replace(config, gap_sampling="uniform"), batch=600)
    gaps = uniform["gap"][uniform["gap"] > 0]
    assert np.all((gaps > 4) & (gaps < 128))
    assert 0.27 < np.mean(gaps < 46) < 0.4, np.mean(gaps < 46)


def test_uniform_gap_sampling_is_flat_over_a_clip(tmp_path):
    """Every frame kept, one 300-frame clip: "clip" sampling leans to small gaps (fewer
    timesteps have far partners on both sides), "uniform" is flat over (4, 128)."""
    files = testutil.write_coded_dataset(tmp_path / "dense", subjects=("S1",), seqs=1,
                                         frame_index=np.arange(0, 300))
    config = _eval_config(d_min=4, d_max=128, tasks=("sync",), pairs_per_clip=2000, passes=1)
    counts = {}
    for mode in configs.GAP_SAMPLING:
        p = _collect(files, dataclasses.replace(config, gap_sampling=mode), batch=1000)
        gaps = p["gap"][p["pair_type"] == pairs.UNSYNC]
        assert np.all((gaps > 4) & (gaps < 128)) and len(gaps) == 1000
        counts[mode] = np.histogram(gaps, bins=[5, 36, 67, 98, 128])[0]
    assert counts["clip"][0] > 1.4 * counts["clip"][-1], counts
    assert np.all(np.abs(counts["uniform"] - 250) < 60), counts
    with pytest.raises(ValueError, match="--gap_sampling=even: expected one of clip,uniform"):
        dataclasses.replace(config, gap_sampling="even").validate()


def test_flipped_frame_equals_mirrored_original(coded_files):
    clip = schema.decode_clip(next(iter(tf.data.TFRecordDataset(coded_files[0]))).numpy())
    p = _collect(coded_files[:1], _eval_config(passes=1, pairs_per_clip=3))
    seqs = p["sequence_id"]
    checked = 0
    for i in np.flatnonzero(p["pair_type"] == pairs.FLIP):
        if seqs[i].decode() != clip.sequence_id:
            continue
        t = (p["frame_a"][i] - 100) // FRAME_STEP
        side = "a" if p["flip_a"][i] else "b"
        v = p[f"camera_{side}"][i]
        original = tf.io.decode_jpeg(clip.images[t][v], dct_method="INTEGER_FAST").numpy()
        np.testing.assert_array_equal(p[f"view_{side}"][i], original[:, ::-1].astype(np.float32))
        checked += 1
    assert checked >= 1


def test_pair_types_balanced_in_training_stream(coded_files):
    def counts(shuffle_buffer):
        config = _eval_config(training=True, passes=None, deterministic=False, seed=None,
                              pairs_per_clip=6, shuffle_buffer=shuffle_buffer)
        types = np.concatenate([m["pair_type"].numpy() for *_, m in pairs.pair_dataset(
            coded_files, config, 30, with_metadata=True).take(10)])
        return np.bincount(types, minlength=3)

    # Exact per clip: 300 pairs = 50 clips x 6 pairs, two of each type.
    np.testing.assert_array_equal(counts(0), [100, 100, 100])
    # The pair shuffle only delays pairs (a buffer of 64), so the stream stays near 1/3 each.
    shuffled = counts(64)
    assert shuffled.sum() == 300 and shuffled.min() >= 80, shuffled


def test_tasks_restrict_pair_types(coded_files):
    p = _collect(coded_files, _eval_config(tasks=("sync",), passes=1))
    assert set(p["pair_type"]) == {pairs.SYNC, pairs.UNSYNC} and "y_flip" not in p


def test_flip_only_needs_no_partners_in_range(coded_files):
    """Flip-only pairs are synchronized: clips with no two timesteps in (d_min, d_max) are
    fine (regression: the unsynchronized sampler used to run anyway and crash on them)."""
    config = _eval_config(tasks=("flip",), passes=1, d_min=500, d_max=600)
    assert pairs.check_records(coded_files, config)["usable"] > 0
    p = _collect(coded_files, config)
    assert set(p["pair_type"]) == {pairs.SYNC, pairs.FLIP} and "y_sync" not in p
    assert (p["gap"] == 0).all()


def test_single_view_variant(coded_files):
    p = _collect(coded_files, _eval_config(views="single", passes=1))
    assert np.array_equal(p["view_a"].shape, p["view_b"].shape)
    for i in range(len(p["pair_type"])):
        assert testutil.decode_code(p["view_a"][i])[1] == testutil.decode_code(p["view_b"][i])[1]


def test_seed_fixes_the_stream_and_training_shapes(coded_files):
    config = _eval_config(training=True, passes=1, augment=augment.AugmentConfig(output_size=24))
    a, b = (list(pairs.pair_dataset(coded_files, config, 4).take(3)) for _ in range(2))
    c = list(pairs.pair_dataset(coded_files, _eval_config(
        training=True, passes=1, seed=4, augment=augment.AugmentConfig(output_size=24)), 4).take(3))
    for (xa, ya, _), (xb, yb, _) in zip(a, b):
        np.testing.assert_array_equal(xa["view_a"], xb["view_a"])
        np.testing.assert_array_equal(ya["sync"], yb["sync"])
    assert a[0][0]["view_a"].shape == (4, 24, 24, 3) and a[0][1]["sync"].shape == (4, 1)
    assert not np.array_equal(a[0][0]["view_a"], c[0][0]["view_a"])


@pytest.mark.parametrize("grouping", groups.GROUPINGS)
def test_group_pairs_are_every_camera_pair_once(grouping):
    """groups.pairs lists every pair of two different cameras of a group once: the
    same-instant pairs (t1, then t2) first, then the cross-instant ones, t1 frame first;
    the flag's choices and the model's inputs come from the same module."""
    names, pair_list = groups.frames(grouping), groups.pairs(grouping)
    c = groups.cameras(grouping)
    assert configs.PairConfig.__dataclass_fields__["pair_grouping"].metadata["choices"] == \
        groups.GROUPINGS
    assert groups.view_keys(grouping) == tuple(f"view_{n}" for n in names)
    if not groups.is_group(grouping):
        assert (names, pair_list) == (("a", "b"), ((0, 1),))
        return
    assert len(names) == 2 * c and set(names) <= set(groups.ALL_FRAMES)
    cam = [n[0] for n in names]
    expected = {frozenset((f, g)) for f in range(2 * c) for g in range(2 * c)
                if cam[f] != cam[g] and not (f >= c and g < c)}
    assert len(pair_list) == len(set(map(frozenset, pair_list))) == len(expected)
    assert set(map(frozenset, pair_list)) == expected
    same = [(f < c) == (g < c) for f, g in pair_list]
    assert same == sorted(same, reverse=True) and sum(same) == c * (c - 1)
    assert all(f < g for f, g in pair_list)
    assert len(pair_list) == {"quads": 4, "hexes": 12, "octets": 24}[grouping]

@pytest.mark.parametrize("grouping, tasks", [
    ("quads", ("sync", "flip")), ("quads", ("sync",)), ("hexes", ("sync", "flip")),
    ("hexes", ("flip",))])
def test_groups_frames_labels_and_masks_agree(coded_files, grouping, tasks):
    """Each group is C different cameras at t1 and the same cameras at t2 (an
    unsynchronized gap); the label blocks follow groups.pairs and the pixels: with a
    flip head exactly one t2 frame is mirrored, its same-instant pairs are the flipped
    pairs, and its cross-instant pairs are masked for both heads."""
    config = _eval_config(pair_grouping=grouping, tasks=tasks, passes=2, pairs_per_clip=5)
    names, pair_list = groups.frames(grouping), groups.pairs(grouping)
    c = len(names) // 2
    assert len(pair_list) == {"quads": 4, "hexes": 12}[grouping]
    n = 0
    for x, y, w in pairs.pair_dataset(coded_files, config, 8):
        b = len(x["view_a"])
        assert all(v.shape == (len(pair_list) * b, 1) for v in y.values())
        assert set(y) == set(tasks)
        for i in range(b):
            codes = [testutil.decode_code(x[f"view_{v}"][i].numpy()) for v in names]
            times, cams, mirrored = zip(*codes)
            assert len(set(times[:c])) == 1 and len(set(times[c:])) == 1
            assert D_MIN < abs(times[c] - times[0]) * FRAME_STEP < D_MAX
            assert cams[:c] == cams[c:] and len(set(cams[:c])) == c
            assert not any(mirrored[:c])
            assert sum(mirrored) == (1 if "flip" in tasks else 0)
            for block, (f, g) in enumerate(pair_list):
                same, m = times[f] == times[g], mirrored[f] or mirrored[g]
                assert cams[f] != cams[g]
                j = block * b + i
                if "sync" in tasks:
                    assert (y["sync"][j, 0], w["sync"][j]) == (float(same), float(not m))
                if "flip" in tasks:
                    assert (y["flip"][j, 0], w["flip"][j]) == (float(same and m), float(same))
            n += 1
    assert n == 4 * 5 * 2  # 4 clips x 5 groups x 2 passes
    with pytest.raises(ValueError, match="plain pairs"):
        pairs.pair_dataset(coded_files, config, 8, with_metadata=True)


def test_input_pipelines_read_disjoint_clips(coded_files):
    seen = []
    for pid in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid)
        ds = pairs.pair_dataset(coded_files, _eval_config(passes=1), 8, input_context=ctx,
                                with_metadata=True)
        seen.append({s for *_, m in ds for s in m["sequence_id"].numpy()})
    assert seen[0] and seen[1] and not seen[0] & seen[1]


def test_bad_settings_and_records(tmp_path, coded_files):
    with pytest.raises(ValueError, match="d_min"):
        _eval_config(d_min=30, d_max=30).validate()
    with pytest.raises(ValueError, match="1 view"):
        pairs.check_records(testutil.write_coded_dataset(tmp_path / "one_view", views=1),
                            _eval_config())
    with pytest.raises(ValueError, match="spans 4 frames"):
        pairs.check_records(testutil.write_coded_dataset(tmp_path / "short", frames=5, step=1),
                            _eval_config())
    info = pairs.check_records(coded_files, _eval_config())
    assert info["usable"] == info["checked"] == 4 and info["num_views"] == V
    with pytest.raises(ValueError, match="2 view.*hexes need at least 3"):
        pairs.check_records(testutil.write_coded_dataset(tmp_path / "two_views", views=2),
                            _eval_config(pair_grouping="hexes"))


# ----------------------------------------------------------------------------- augment ops

def test_crop_window_bounds_and_symmetry():
    config = augment.AugmentConfig(min_scale=0.5, max_scale=0.9)
    wins = np.stack([augment.random_crop_window(tf.constant([i, 7], tf.int64), 40, config).numpy()
                     for i in range(300)])
    y0, x0, h, w = wins.T
    assert np.all(h == w) and np.all((h >= 20) & (h <= 36)) and np.all(x0 + w <= 40)
    # Mirror symmetry: the left margin and the right margin have the same distribution.
    right = 40 - x0 - w
    assert abs(x0.mean() - right.mean()) < 1.0 and x0.min() == 0 and right.min() == 0


def test_jitter_commutes_with_flip_and_matches_in_tf_data():
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (4, 8, 8, 3)), tf.float32)
    factors = tf.stack([augment.jitter_factors(tf.constant([i, 1], tf.int64),
                                               augment.AugmentConfig()) for i in range(4)])
    eager = augment.apply_colour_jitter(images, factors)
    np.testing.assert_allclose(augment.apply_colour_jitter(images[:, :, ::-1], factors),
                               eager[:, :, ::-1], atol=1e-3)
    in_data = next(iter(tf.data.Dataset.from_tensors((images, factors)).map(
        augment.apply_colour_jitter)))
    np.testing.assert_allclose(in_data, eager, atol=1e-4)
    assert not np.allclose(eager, images, atol=1.0)
