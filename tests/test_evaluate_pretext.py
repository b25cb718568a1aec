"""Pretext-evaluation statistics (the binary itself runs in test_pretrain's learning test)."""
import itertools

import numpy as np
import pytest

from tf_synchro import evaluate_pretext


def _pairwise_auc(pos, neg):
    # Definition: fraction of (positive, negative) pairs ordered right, ties count 1/2.
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    return float(np.mean(wins))


def test_roc_auc_extremes_and_ties():
    assert evaluate_pretext.roc_auc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert evaluate_pretext.roc_auc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert evaluate_pretext.roc_auc([1.0, 1.0], [1.0, 1.0, 1.0]) == 0.5
    assert evaluate_pretext.roc_auc([1.0, 2.0], [1.0, 0.0]) == pytest.approx(0.875)


def test_roc_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(3)
    # Rounded scores: many ties, as with saturated logits.
    pos = np.round(rng.normal(0.5, 1.0, 137), 1)
    neg = np.round(rng.normal(0.0, 1.0, 91), 1)
    assert evaluate_pretext.roc_auc(pos, neg) == pytest.approx(_pairwise_auc(pos, neg), abs=1e-12)
    # Threshold-free: any increasing transform of the scores leaves it unchanged.
    assert evaluate_pretext.roc_auc(np.exp(pos), np.exp(neg)) == pytest.approx(
        evaluate_pretext.roc_auc(pos, neg), abs=1e-12)


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="0 negative"):
        evaluate_pretext.roc_auc([1.0], [])
