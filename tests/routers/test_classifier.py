"""The classifier family (router.routers.classifier): no probability for a model never best; ties by cost."""

from __future__ import annotations

import numpy as np

from router.routers import make_router


def test_classifier_gives_zero_probability_to_models_never_best():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    Y = np.zeros((150, 3))
    Y[np.arange(150), (X[:, 0] > 0).astype(int)] = 1.0  # model 2 is never best
    for label in ("hard", "soft"):
        P = make_router("classifier", alpha=0.01, label=label).fit(X, Y).predict_scores(X)
        np.testing.assert_allclose(P.sum(axis=1), 1.0)
        assert (P[:, 2] == 0).all() and (np.argmax(P, axis=1) == Y.argmax(axis=1)).mean() > 0.9


def test_classifier_hard_label_breaks_ties_by_cost():
    X = np.random.default_rng(0).normal(size=(60, 3))
    Y = np.ones((60, 2))  # always a tie; model 1 is cheaper
    C = np.tile([2.0, 1.0], (60, 1))
    P = make_router("classifier", alpha=0.01, label="hard").fit(X, Y, C).predict_scores(X)
    assert (P[:, 1] == 1.0).all()
