"""The linear families (router.routers.linear): the ridge path against sklearn, alpha chosen by routing
quality, and logistic on scores that are not in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from router.routers import make_router
from router.routers.linear import ridge_path
from tests.routers.conftest import fit


def test_ridge_path_matches_sklearn_per_model_on_observed_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    Y = X @ rng.normal(size=(6, 3)) + rng.normal(size=(120, 3))
    mask = rng.random(Y.shape) > 0.25
    coef, icpt = ridge_path(X, np.where(mask, Y, np.nan), mask, np.array([0.5, 5.0]))
    for a, alpha in enumerate([0.5, 5.0]):
        for j in range(3):
            ref = Ridge(alpha=alpha).fit(X[mask[:, j]], Y[mask[:, j], j])
            np.testing.assert_allclose(coef[a][:, j], ref.coef_, rtol=1e-8)
            assert icpt[a, j] == pytest.approx(ref.intercept_)


def test_ridge_cv_chooses_alpha_from_grid_by_routing_quality(mmlu):
    d, X, tr, _ = mmlu
    router = fit("ridge", d, X, tr, alpha=(0.01, 30.0, 1e4))
    assert set(router.cv_results_) == {0.01, 30.0, 1e4}
    assert router.alpha_[0] == max(router.cv_results_, key=router.cv_results_.get)
    per_model = fit("ridge", d, X, tr, alpha=(0.01, 30.0, 1e4), alpha_per_model=True, target="centred")
    assert per_model.alpha_.shape == (d.n_models,) and set(per_model.alpha_) <= {0.01, 30.0, 1e4}


def test_logistic_maps_non_unit_scores_back_to_their_scale():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    Y = np.clip(np.round(5 + 3 * X[:, :2] + rng.normal(size=(200, 2))), 1, 10)  # 1-10 ratings
    S = make_router("logistic", alpha=0.01).fit(X, Y).predict_scores(X)
    assert 0.0 <= S.min() and S.max() <= 10.0
    assert np.corrcoef(S[:, 0], Y[:, 0])[0, 1] > 0.8
