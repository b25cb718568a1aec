"""Pretext-evaluation statistics on known inputs (the binary itself runs in test_pretrain's
learning test)."""
import inspect
import itertools

import numpy as np
import pytest

from tf_synchro.data import pairs
from tf_synchro import configs
from tf_synchro.tasks import pose3d, pretext


def _pairwise_auc(pos, neg):
    # Definition: fraction of (positive, negative) pairs ordered right, ties count 1/2.
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    return float(np.mean(wins))


def test_roc_auc_extremes_and_ties():
    assert pretext.roc_auc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert pretext.roc_auc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert pretext.roc_auc([1.0, 1.0], [1.0, 1.0, 1.0]) == 0.5
    assert pretext.roc_auc([1.0, 2.0], [1.0, 0.0]) == pytest.approx(0.875)


def test_roc_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(3)
    # Rounded scores: many ties, as with saturated logits.
    pos = np.round(rng.normal(0.5, 1.0, 137), 1)
    neg = np.round(rng.normal(0.0, 1.0, 91), 1)
    assert pretext.roc_auc(pos, neg) == pytest.approx(_pairwise_auc(pos, neg), abs=1e-12)
    # Threshold-free: any increasing transform of the scores leaves it unchanged.
    assert pretext.roc_auc(np.exp(pos), np.exp(neg)) == pytest.approx(
        pretext.roc_auc(pos, neg), abs=1e-12)


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="0 negative"):
        pretext.roc_auc([1.0], [])


# ----------------------------------------------------------------------------- score_pairs

S, U, F = pairs.SYNC, pairs.UNSYNC, pairs.FLIP
# Eight scored pairs, worked out by hand below. Masked logits (a sync logit of a flipped
# pair, a flip logit of an unsynchronized pair) are extreme and always "wrong", so any use
# of them would show.
TYPES = np.array([S, S, U, U, U, F, F, S])
GAPS = np.array([0, 0, 5, 10, 12, 0, 0, 0])
SYNC_LOGITS = np.array([2.0, -0.5, -1.0, 1.0, -3.0, -9.0, 9.0, 0.5])
FLIP_LOGITS = np.array([-1.0, 0.3, 9.0, 9.0, 9.0, 1.5, -0.2, -2.0])


def _score(logits=None, num_gap_bins=2):
    logits = {"sync": SYNC_LOGITS, "flip": FLIP_LOGITS} if logits is None else logits
    # d_min=4, d_max=13: gaps 5..12; two bins [5, 9) and [9, 13).
    return pretext.score_pairs(TYPES, GAPS, logits, d_min=4, d_max=13,
                                        num_gap_bins=num_gap_bins)


def test_score_pairs_masked_accuracies_and_aucs_by_hand():
    r = _score()
    assert r["num_pairs"] == 8 and r["pairs_per_type"] == {"sync": 3, "unsync": 3, "flip": 2}
    assert (r["d_min"], r["d_max"]) == (4, 13)
    # Sync head sees pairs 0, 1, 7 (label 1) and 2, 3, 4 (label 0); right: 0, 7, 2, 4.
    assert r["sync_accuracy"] == pytest.approx(4 / 6)
    assert r["sync_accuracy_synchronized"] == pytest.approx(2 / 3)
    assert r["sync_accuracy_unsynchronized"] == pytest.approx(2 / 3)
    # Synchronized (2.0, -0.5, 0.5) above unsynchronized (-1.0, 1.0, -3.0): 3 + 2 + 2 of 9.
    assert r["sync_auc"] == pytest.approx(7 / 9)
    # Flip head sees 0, 1, 7 (label 0) and 5, 6 (label 1); right: 0, 7, 5.
    assert r["flip_accuracy"] == pytest.approx(3 / 5)
    # Flipped (1.5, -0.2) above synchronized (-1.0, 0.3, -2.0): 3 + 2 of 6.
    assert r["flip_auc"] == pytest.approx(5 / 6)


def test_score_pairs_gap_curve_by_hand():
    curve = _score()["sync_accuracy_by_gap"]
    assert curve == [
        {"gap_lo": 0, "gap_hi": 1, "count": 3, "accuracy": pytest.approx(2 / 3)},
        {"gap_lo": 5, "gap_hi": 9, "count": 1, "accuracy": 1.0},    # gap 5: -1.0, right
        {"gap_lo": 9, "gap_hi": 13, "count": 2, "accuracy": 0.5},   # gaps 10 (wrong), 12
    ]
    # Four bins [5, 7), [7, 9), [9, 11), [11, 13): the empty [7, 9) is left out.
    curve = _score(num_gap_bins=4)["sync_accuracy_by_gap"]
    assert [(c["gap_lo"], c["gap_hi"], c["count"]) for c in curve] == [
        (0, 1, 3), (5, 7, 1), (9, 11, 1), (11, 13, 1)]
    # The paper's range in 8 bins covers the gaps 5..127 without overlap.
    edges = pretext._gap_edges(4, 128, 8)
    assert edges[0] == 5 and edges[-1] == 128 and np.all(np.diff(edges) > 0)


def test_score_pairs_ignores_masked_logits_and_absent_heads():
    reference = _score()
    sync, flip = SYNC_LOGITS.copy(), FLIP_LOGITS.copy()
    sync[TYPES == F] *= -1  # The sync head never sees flipped pairs...
    flip[TYPES == U] *= -1  # ...nor the flip head unsynchronized ones.
    assert _score({"sync": sync, "flip": flip}) == reference
    # Control: a logit a head does see changes its figures.
    flip[0] = 5.0
    assert _score({"sync": sync, "flip": flip})["flip_accuracy"] == pytest.approx(2 / 5)
    sync_only = _score({"sync": SYNC_LOGITS})
    assert "flip_accuracy" not in sync_only and "flip_auc" not in sync_only
    assert sync_only["sync_auc"] == reference["sync_auc"]
    flip_only = _score({"flip": FLIP_LOGITS})
    assert not any(k.startswith("sync") for k in flip_only)
    assert flip_only["flip_accuracy"] == reference["flip_accuracy"]


def test_both_tasks_evaluate_a_loaded_model_with_one_shape():
    """The same arguments, each task's settings one config, loading the caller's
    (docs/DESIGN.md §3, "The two tasks: one skeleton")."""
    shapes = {task.__name__: inspect.signature(task.evaluate).parameters
              for task in (pretext, pose3d)}
    for name, params in shapes.items():
        assert list(params) == ["trained", "data_dir", "config", "data_check"], name
        assert params["data_check"].default is None, name
    assert isinstance(shapes[pretext.__name__]["config"].default, configs.PretextEvalConfig)
    assert isinstance(shapes[pose3d.__name__]["config"].default, configs.PoseEvalConfig)
