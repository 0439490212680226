"""The baseline families (router.routers.baselines): best single predicts the training means; random is seeded."""

from __future__ import annotations

import numpy as np

from tests.routers.conftest import fit


def test_best_single_predicts_training_means(mmlu):
    d, X, tr, te = mmlu
    S = fit("best_single", d, X, tr).predict_scores(X[te])
    means = np.nanmean(np.where(d.mask[tr], d.scores[tr], np.nan), axis=0)
    np.testing.assert_allclose(S, np.broadcast_to(means, S.shape))


def test_random_router_is_seeded(mmlu):
    d, X, tr, te = mmlu
    S3 = fit("random", d, X, tr).predict_scores(X[te])
    S4 = fit("random", d, X, tr, random_state=4).predict_scores(X[te])
    assert not np.allclose(S3, S4)
    assert ((0 <= S3) & (S3 < 1)).all()
