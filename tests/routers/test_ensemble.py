"""The ensemble family (router.routers.ensemble): weights and normalisation, and CV dropping a noise member."""

from __future__ import annotations

import numpy as np
import pytest

from router.routers import make_router
from tests.routers.conftest import FAST


def test_ensemble_weights_and_normalisation(mmlu):
    d, X, tr, te = mmlu
    members = FAST["ensemble"]["routers"]
    plain = make_router("ensemble", routers=members, normalise="none", weights=(3.0, 1.0), shrink=0.0)
    plain.fit(X[tr], d.scores[tr], mask=d.mask[tr])
    parts = [r.predict_scores(X[te]) for _, r in plain.routers_]
    np.testing.assert_allclose(plain.predict_scores(X[te]), 0.75 * parts[0] + 0.25 * parts[1])
    with pytest.raises(ValueError, match="weights has 1 entries for 2 routers"):
        make_router("ensemble", routers=members, weights=(1.0,)).fit(X[tr], d.scores[tr])
    with pytest.raises(ValueError, match="weights='best' is not valid"):
        make_router("ensemble", routers=members, weights="best").fit(X[tr], d.scores[tr])
    with pytest.raises(ValueError, match="normalise='softmax' is not valid"):
        make_router("ensemble", routers=members, normalise="softmax").fit(X[tr], d.scores[tr])


def test_ensemble_cv_drops_a_noise_member_and_shrinks_on_noise():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    # Model 1 wins where x0 > 0, model 0 elsewhere; model 2 is a weak third.
    p = np.stack([np.where(X[:, 0] > 0, 0.3, 0.8), np.where(X[:, 0] > 0, 0.8, 0.3), np.full(600, 0.4)], axis=1)
    Y = (rng.random(p.shape) < p).astype(float)
    members = [("ridge", make_router("ridge", alpha=1.0)), ("random", make_router("random"))]
    router = make_router("ensemble", routers=members, cv=3).fit(X, Y)
    assert router.weights_[1] == 0 and router.routers_[1][1] is None  # not kept for serving
    assert router.shrink_ < 0.5
    assert (router.route(X) == np.argmax(p, axis=1)).mean() > 0.9
    # Pure noise: the out-of-fold choice falls back towards the training means.
    Y_noise = (rng.random((600, 3)) < [0.7, 0.5, 0.5]).astype(float)
    noise = make_router("ensemble", routers=members, cv=3, shrink=(0.0, 1.0)).fit(X, Y_noise)
    assert noise.shrink_ == 1.0
