"""The referee's fast AUROC and Brier equal sklearn's on random inputs with ties, and the
recorded threshold is the one TPR@FPR uses; no model is loaded."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from auditgame.referee import metrics as M


def test_auroc_and_brier_equal_sklearn_with_ties() -> None:
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(500):
        n = int(rng.integers(2, 40))
        y = rng.integers(0, 2, n)
        s = np.round(rng.random(n), int(rng.integers(1, 3)))  # one or two decimals: many ties
        if len(set(y.tolist())) < 2:
            assert M.auroc(y, s) is None
            continue
        assert M.auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert M.brier(y, s) == pytest.approx(brier_score_loss(y, s), abs=1e-12)
        checked += 1
    assert checked > 400


def test_threshold_is_the_one_tpr_uses() -> None:
    rng = np.random.default_rng(3)
    for n_clean in (1, 5, 19, 20, 41):
        y = np.array([0] * n_clean + [1] * 7)
        s = np.round(rng.random(len(y)), 1)
        tau = M.fpr_threshold(y, s)
        assert tau is not None
        assert M.tpr_at_fpr(y, s) == pytest.approx(float(np.mean(s[y == 1] > tau)))
        assert np.mean(s[y == 0] > tau) <= M.MAX_FPR  # the bound holds, ties included
    assert M.fpr_threshold([1, 1], [0.2, 0.3]) is None
